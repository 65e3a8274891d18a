#!/usr/bin/env bash
# The command-line chain a new user runs after README command (a):
#   scan -> train -> evaluate -> predict -> explain -> export
# on a folder of real images (scikit-learn's handwritten digits, written as
# PNG class folders, plus a large JPEG and PNG photograph-sized upscale).
# Usage: .ci/cli_chain.sh VENV_BIN_DIR WORK_DIR
# Fails when a command fails, prints a traceback, or lets a TensorFlow native
# log line (e.g. "I0000 ... cudart_stub.cc") reach stderr.
set -uo pipefail
bin=$1
work=$2
mkdir -p "$work"

run() {
  local name=$1
  shift
  echo "+ medivision $*"
  local start=$SECONDS
  "$bin/medivision" "$@" >"$work/$name.out" 2>"$work/$name.err"
  local status=$?
  cat "$work/$name.out"
  if [ -s "$work/$name.err" ]; then
    echo "  (stderr)"
    sed 's/^/  | /' "$work/$name.err" | tail -20
  fi
  echo "  -> exit $status in $((SECONDS - start)) s"
  [ "$status" -eq 0 ] || { echo "CI chain: 'medivision $name' exited $status" >&2; return 1; }
  if grep -qE '^[IWEF][0-9]{4} [0-9:.]+ +[0-9]+ [^ ]+:[0-9]+\]|absl::InitializeLog' "$work/$name.err"; then
    echo "CI chain: TensorFlow log lines reached stderr in 'medivision $name'" >&2
    return 1
  fi
  if grep -q '^Traceback' "$work/$name.err"; then
    echo "CI chain: a traceback in 'medivision $name'" >&2
    return 1
  fi
}

"$bin/python" - "$work" <<'PY' || exit 1
import os, sys
import cv2
import numpy as np
from sklearn.datasets import load_digits

work = sys.argv[1]
digits = load_digits()
for label in (0, 1, 7):
    folder = os.path.join(work, "digits", f"digit_{label}")
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(digits.images[digits.target == label][:60]):
        pixels = (image * (255 / 16)).astype(np.uint8)
        cv2.imwrite(os.path.join(folder, f"{i:03d}.png"),
                    cv2.resize(pixels, (32, 32), interpolation=cv2.INTER_CUBIC))
big = cv2.resize((digits.images[1] * 15.9).astype(np.uint8), (1600, 1200),
                 interpolation=cv2.INTER_CUBIC)
cv2.imwrite(os.path.join(work, "large.png"), big)
cv2.imwrite(os.path.join(work, "large.jpg"), cv2.cvtColor(big, cv2.COLOR_GRAY2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 90])
print(f"wrote {3 * 60} digit PNGs and two 1600x1200 images under {work}")
PY

time_help() {
  "$bin/python" - "$bin/medivision" "$@" <<'PY'
import subprocess, sys, time
start = time.perf_counter()
subprocess.run([*sys.argv[1:], "--help"], check=True, stdout=subprocess.DEVNULL)
print(f"  medivision {' '.join(sys.argv[2:])} --help: {time.perf_counter() - start:.2f} s")
PY
}
time_help || exit 1
time_help train || exit 1

run scan scan "$work/digits" --report "$work/scan.csv" || exit 1
run train train "$work/digits" --image-size 32 --backbone smallcnn --weights none \
  --epochs 4 --out "$work/run" --quiet || exit 1
run evaluate evaluate "$work/run/model.keras" "$work/digits" --out "$work/eval" || exit 1
run predict predict "$work/run/model.keras" "$work/large.png" "$work/large.jpg" \
  "$work/digits/digit_7/000.png" --csv "$work/predictions.csv" || exit 1
run explain explain "$work/run/model.keras" "$work/large.jpg" "$work/digits/digit_0/000.png" \
  --out "$work/heatmaps" || exit 1
run export export "$work/run/model.keras" "$work/export/digits" || exit 1

grep -q '"freeze_backbone": false' "$work/run/config.json" \
  || { echo "CI chain: --weights none did not train the backbone (config.json)" >&2; exit 1; }
test -s "$work/eval/confusion_matrix.png" || { echo "CI chain: no confusion matrix" >&2; exit 1; }
ls "$work/heatmaps"/*.png >/dev/null || { echo "CI chain: no heatmaps" >&2; exit 1; }
ls -d "$work/export/digits"/1 >/dev/null || { echo "CI chain: no export" >&2; exit 1; }
# The base install has no [pacs] extra: dicom-report must say what to install.
if "$bin/python" -c "import highdicom" 2>/dev/null; then
  echo "CI chain: highdicom is in the base install (it belongs to the [pacs] extra)" >&2; exit 1
fi
pacs_message=$("$bin/medivision" dicom-report "$work/run/model.keras" "$work/large.png" 2>&1)
echo "$pacs_message" | grep -q "pip install 'medivision-tf\[pacs\]'" \
  || { echo "CI chain: dicom-report without the extra: $pacs_message" >&2; exit 1; }
echo "CI chain: all commands passed"

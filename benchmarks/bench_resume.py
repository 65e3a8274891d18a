"""Timed kills: `medivision train` SIGKILLed at random moments resumes exactly.

```
python benchmarks/bench_resume.py [--quick] [--json OUT.json] [--kills 10] [--seed 0]
    [--markdown OUT.md]
```

`tests/test_resume.py` kills a run at five chosen code points. This probe
kills it at *times*: wherever the process happens to be (inside a Keras
save, between a file write and its rename, in the middle of a `state.json`
update, while the evaluation draws its plots).

1. Data: scikit-learn's handwritten digits (real 8x8 scans, shipped inside
   scikit-learn), digits 0-4, upscaled to 32x32 PNG class folders as
   `.ci/cli_chain.sh` writes them.
2. One uninterrupted reference run of the command below (both phases and
   the evaluation of the test split), its stdout read line by line with
   timestamps: the timeline of the phase lines, every epoch's begin and end,
   the "Trained ..." line after the final `model.keras` write, and the exit.
3. `--kills` runs of the same command in fresh folders, each SIGKILLed once,
   then rerun to completion. The kills are spread over four segments of the
   reference timeline (phase 1, phase 2, final model write = after the last
   epoch until "Trained", evaluation = "Trained" until exit) in proportion
   3:3:2:2; within a segment at evenly spaced fractions of its reference
   duration plus a jitter drawn from a seeded RNG (`--seed`). Each kill time
   is re-anchored to the reference's last timeline line before it (a phase
   line, an epoch's begin or end, "Trained"): the killed run is SIGKILLed
   that many seconds after printing the same line, so a slower start-up or
   epoch (the machine is shared) does not move a kill to another segment.
   The offset is scaled by the killed run's speed (its time to the anchor
   line over the reference's), and a run that finishes before its kill is
   started again with half the offset (up to three tries, recorded). Where
   the run really was is read from its own stdout up to the kill.
4. Each finished folder is checked against the reference run: the same
   epochs per phase; exactly one `history.csv` row per epoch; `state.json`
   complete and evaluated, both phases complete, no backup named,
   `best_epoch` / `best_value` equal to the best `val_loss` row of the
   history; `checkpoints/best.keras` loads and its loss on the validation
   split equals that row's `val_loss` (so it holds that epoch's weights);
   `model.keras` loads; `evaluation/metrics.json` is there with the
   reference's keys; the folder holds the reference's files (TensorBoard
   event files aside, whose names carry a timestamp), and no `.partial-*`
   or other temporary file. And the numbers: every `history.csv` value and
   every number in `evaluation/metrics.json` equals the reference run's to
   round-off (relative 1e-4): the resumed epochs see the same batches,
   augmentation and dropout draws and optimizer state.

The command (`python -m medivision_tf train`, smallcnn from scratch, 32x32
grayscale, 3 + 3 epochs; `--quick`: 2 + 1 epochs and 4 kills):

```
medivision train DIGITS --out RUN --backbone smallcnn --weights none --image-size 32
    --channels 1 --epochs 3 --fine-tune-epochs 3 --batch-size 32 --lstm-units 16
    --attention-units 8 --val-split 0.2 --test-split 0.2 --learning-rate 0.003
    --fine-tune-learning-rate 0.001 --seed 0
```
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SEGMENTS = ("phase 1", "phase 2", "final write", "evaluation")
#: Share of the kills per segment (phase 1, phase 2, final write, evaluation).
SHARES = (3, 3, 2, 2)
EPOCH_END = re.compile(r"^\d+/\d+ - ")  # Keras' one-line-per-epoch summary (verbose=2)
TEMPORARY = re.compile(r"(^\.partial-|\.tmp$|^tmp|~$|\.swp$)")


def settings(args):
    """The command's training budget and the kills of a full or `--quick` run."""
    if args.quick:
        # Keras prints no "Epoch 1/1" line: phase 1 needs two epochs for the timeline.
        return dict(classes=3, images_per_class=40, epochs=2, fine_tune_epochs=1,
                    kills=4, seed=args.seed, image_size=32)
    return dict(classes=5, images_per_class=80, epochs=3, fine_tune_epochs=3,
                kills=args.kills, seed=args.seed, image_size=32)


def write_digits(folder, classes, per_class, size):
    """Digits 0..classes-1 as `size`² PNG class folders; returns the image count."""
    import cv2
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    count = 0
    for label in range(classes):
        target = os.path.join(folder, f"digit_{label}")
        os.makedirs(target, exist_ok=True)
        for i, image in enumerate(digits.images[digits.target == label][:per_class]):
            pixels = (image * (255 / 16)).astype(np.uint8)
            cv2.imwrite(os.path.join(target, f"{i:03d}.png"),
                        cv2.resize(pixels, (size, size), interpolation=cv2.INTER_CUBIC))
            count += 1
    return count


def train_command(data_dir, run_dir, config):
    """`python -m medivision_tf train ...` for `run_dir` (the same for every run)."""
    return [
        sys.executable, "-m", "medivision_tf", "train", data_dir, "--out", run_dir,
        "--backbone", "smallcnn", "--weights", "none",
        "--image-size", str(config["image_size"]), "--channels", "1",
        "--epochs", str(config["epochs"]), "--fine-tune-epochs", str(config["fine_tune_epochs"]),
        "--batch-size", "32", "--lstm-units", "16", "--attention-units", "8",
        "--val-split", "0.2", "--test-split", "0.2", "--learning-rate", "0.003",
        "--fine-tune-learning-rate", "0.001", "--seed", "0",
    ]


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (common.REPO_ROOT, env.get("PYTHONPATH")) if p)
    return env


class Run:
    """One `medivision train` process whose stdout lines are timestamped.

    Args:
        command: the argv.
        log_path: where its stderr goes.
    """

    def __init__(self, command, log_path):
        self.lines = []  # (seconds since start, line)
        self.changed = threading.Condition()
        self.stderr = open(log_path, "w")
        self.start = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True, env=_env(), cwd=common.REPO_ROOT)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            with self.changed:
                self.lines.append((time.perf_counter() - self.start, line.rstrip("\n")))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, key, timeout):
        """Seconds since start of the timeline line `key` (`event_keys`; None: exited first)."""
        deadline = time.perf_counter() + timeout
        with self.changed:
            while True:
                for t, found in event_keys(list(self.lines)):
                    if found == key:
                        return t
                if not self.reader.is_alive() or time.perf_counter() > deadline:
                    return None
                self.changed.wait(0.05)

    def kill(self):
        """SIGKILLs the process; returns seconds since start."""
        self.process.send_signal(signal.SIGKILL)
        return time.perf_counter() - self.start

    def finish(self, timeout=1800):
        """Waits for the exit; returns (returncode, seconds since start)."""
        returncode = self.process.wait(timeout=timeout)
        elapsed = time.perf_counter() - self.start
        self.reader.join(timeout=10)
        self.stderr.close()
        return returncode, elapsed


def timeline(lines, exit_s):
    """The events of a run's stdout: phase lines, epochs, final write, exit.

    Returns:
        dict with `phase1`, `phase2`, `trained` (seconds since start, or None),
        `epochs` (list of {"epoch", "begin", "end"}), `last_epoch_end`, `exit`.
    """
    events = {"phase1": None, "phase2": None, "trained": None, "epochs": [], "exit": exit_s}
    for t, line in lines:
        if line.startswith("Phase 1:"):
            events["phase1"] = t
        elif line.startswith("Phase 2:"):
            events["phase2"] = t
        elif line.startswith("Trained "):
            events["trained"] = t
        elif line.startswith("Epoch "):
            events["epochs"].append({"epoch": int(line.split()[1].split("/")[0]),
                                     "begin": t, "end": None})
        elif EPOCH_END.match(line) and events["epochs"] and events["epochs"][-1]["end"] is None:
            events["epochs"][-1]["end"] = t
    ends = [e["end"] for e in events["epochs"] if e["end"] is not None]
    events["last_epoch_end"] = ends[-1] if ends else None
    return events


def segment_bounds(events):
    """Segment name -> (start, end) in seconds since start of a finished run."""
    return {
        "phase 1": (events["phase1"], events["phase2"]),
        "phase 2": (events["phase2"], events["last_epoch_end"]),
        "final write": (events["last_epoch_end"], events["trained"]),
        "evaluation": (events["trained"], events["exit"]),
    }


def event_keys(lines):
    """`(seconds, key)` of a run's timeline lines, in order.

    Keys: `phase1`, `phase2`, `epochN` (its "Epoch N/M" line), `endN` (its
    summary line), `trained` (after the final write).
    """
    epoch = None
    for t, line in lines:
        if line.startswith("Phase 1:"):
            yield t, "phase1"
        elif line.startswith("Phase 2:"):
            yield t, "phase2"
        elif line.startswith("Epoch "):
            epoch = int(line.split()[1].split("/")[0])
            yield t, f"epoch{epoch}"
        elif EPOCH_END.match(line) and epoch is not None:
            yield t, f"end{epoch}"
            epoch = None
        elif line.startswith("Trained "):
            yield t, "trained"


def plan_kills(events, bounds, kills, seed):
    """The kills: a time of the reference run, re-anchored to its last line before.

    Kills go to the segments in proportion `SHARES` (at least one each when
    there are four or more); the j-th of n kills in a segment of reference
    duration d is at `start + (j + 0.5 + u) / n * d`, `u` uniform in
    [-0.3, 0.3) from a seeded RNG. Each kill is then expressed as the last
    timeline line of the reference run before that time (`anchor`) and the
    seconds after it (`offset_s`): the killed run is killed that long after
    printing that line, so a slower start-up or epoch elsewhere does not move
    the kill to another part of the run.

    Args:
        events: the reference run's `event_keys`, as a list.
        bounds: its `segment_bounds`.
        kills: how many kills.
        seed: the jitter's seed.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = [max(1 if kills >= len(SHARES) else 0, kills * s // sum(SHARES)) for s in SHARES]
    while sum(counts) > kills:
        counts[counts.index(max(counts))] -= 1
    i = 0
    while sum(counts) < kills:  # the remainder to the training phases first
        counts[i % len(counts)] += 1
        i += 1
    plan = []
    for segment, n in zip(SEGMENTS, counts):
        start, end = bounds[segment]
        for j in range(n):
            fraction = (j + 0.5 + rng.uniform(-0.3, 0.3)) / n
            at = start + fraction * (end - start)
            anchor_s, anchor = max((e for e in events if e[0] <= at), key=lambda e: e[0])
            plan.append({"segment": segment, "fraction": round(float(fraction), 3),
                         "reference_s": round(float(at), 2), "anchor": anchor,
                         "offset_s": round(float(at - anchor_s), 3)})
    return plan


def phase_at(lines, kill_s, total_epochs):
    """Where a run was when killed, from its stdout up to `kill_s`."""
    where = "start-up"
    for t, line in lines:
        if t > kill_s:
            break
        if line.startswith("Phase 1:"):
            where = "phase 1"
        elif line.startswith("Phase 2:"):
            where = "phase 2"
        elif line.startswith("Epoch "):
            where = f"{where.split(',')[0]}, epoch {line.split()[1].split('/')[0]}"
        elif EPOCH_END.match(line) and where.endswith(f"epoch {total_epochs}"):
            where = "final write"
        elif line.startswith("Trained "):
            where = "evaluation"
    return where


def folder_files(run_dir):
    """Relative paths of the files in a run folder (TensorBoard event files as folders)."""
    found = set()
    for parent, _, files in os.walk(run_dir):
        rel = os.path.relpath(parent, run_dir)
        for name in files:
            path = os.path.normpath(os.path.join(rel, name))
            if name.startswith("events.out.tfevents."):
                path = os.path.join(rel, "events.out.tfevents.*")
            found.add(path)
    return found


class Checker:
    """Checks finished run folders against the reference run."""

    def __init__(self, reference_dir, config):
        self.config = config
        self.reference = reference_dir
        self.files = folder_files(reference_dir)
        with open(os.path.join(reference_dir, "evaluation", "metrics.json")) as f:
            self.metrics = json.load(f)
        self.metric_keys = sorted(self.metrics)
        import pandas as pd

        self.history = pd.read_csv(os.path.join(reference_dir, "history.csv"))
        self.val = None
        self.last_best_loss = None  # (best.keras's val loss, history's), of the last check

    def _val_dataset(self, run_dir):
        if self.val is None:  # every run has the same config, hence the same split
            from medivision_tf.data.pipeline.training_inputs import training_inputs
            from medivision_tf.training import load_config

            config = load_config(os.path.join(run_dir, "config.json"))
            self.train_config = config
            self.val = training_inputs(config, global_batch=config.batch_size).val
        return self.val

    def best_checkpoint_loss(self, run_dir):
        """The loss of `checkpoints/best.keras` on the validation split."""
        import keras

        import medivision_tf  # noqa: F401  (registers the custom layers)
        from medivision_tf.training import make_loss

        val = self._val_dataset(run_dir)
        model = keras.saving.load_model(os.path.join(run_dir, "checkpoints", "best.keras"),
                                        compile=False, safe_mode=True)
        model.compile(loss=make_loss(self.train_config))
        with warnings.catch_warnings():  # "input ran out of data": the split has no length
            warnings.simplefilter("ignore", UserWarning)
            loss = model.evaluate(val, verbose=0, return_dict=True)["loss"]
        keras.backend.clear_session()
        return float(loss)

    def __call__(self, run_dir):
        """The reasons `run_dir` differs from an uninterrupted run (empty: ok)."""
        import pandas as pd

        reasons = []
        config = self.config
        total = config["epochs"] + config["fine_tune_epochs"]
        history_path = os.path.join(run_dir, "history.csv")
        if not os.path.isfile(history_path):
            return ["no history.csv"]
        history = pd.read_csv(history_path)
        epochs = list(history["epoch"])
        if epochs != list(range(total)):
            reasons.append(f"history.csv epochs {epochs}, expected 0..{total - 1} once each")
        phase1 = sum(1 for e in epochs if e < config["epochs"])
        if (phase1, len(epochs) - phase1) != (config["epochs"], config["fine_tune_epochs"]):
            reasons.append(f"epochs per phase {phase1}/{len(epochs) - phase1}, expected "
                           f"{config['epochs']}/{config['fine_tune_epochs']}")
        state_path = os.path.join(run_dir, "state.json")
        state = {}
        if os.path.isfile(state_path):
            with open(state_path) as f:
                state = json.load(f)
        for key in ("complete", "evaluated", "phase1_complete", "phase2_complete"):
            if state.get(key) is not True:
                reasons.append(f"state.json {key}={state.get(key)!r}")
        if state.get("epochs_done") != total:
            reasons.append(f"state.json epochs_done={state.get('epochs_done')!r}, "
                           f"expected {total}")
        for key in ("backup", "best_pending"):
            if state.get(key) is not None:
                reasons.append(f"state.json still names a {key}: {state.get(key)!r}")
        best_epoch, best_value = state.get("best_epoch"), state.get("best_value")
        if len(history) and "val_loss" in history:
            row = int(history["val_loss"].idxmin())
            expected_epoch = int(history["epoch"][row]) + 1
            expected_value = float(history["val_loss"][row])
            if best_epoch != expected_epoch:
                reasons.append(f"best_epoch={best_epoch!r}, history's best is {expected_epoch}")
            if best_value is None or abs(best_value - expected_value) > 1e-6 * max(
                    1.0, abs(expected_value)):
                reasons.append(f"best_value={best_value!r}, history's best {expected_value}")
            best_path = os.path.join(run_dir, "checkpoints", "best.keras")
            if not os.path.isfile(best_path):
                reasons.append("no checkpoints/best.keras")
            elif best_epoch is not None and 1 <= best_epoch <= len(history):
                try:
                    loss = self.best_checkpoint_loss(run_dir)
                except Exception as error:  # noqa: BLE001 - a broken file is a finding
                    reasons.append(f"best.keras does not load: {type(error).__name__}: {error}")
                else:
                    logged = float(history["val_loss"][best_epoch - 1])
                    self.last_best_loss = (loss, logged)
                    if abs(loss - logged) > 2e-4 * max(1.0, abs(logged)):
                        reasons.append(f"best.keras val loss {loss:.6f} != epoch {best_epoch}'s "
                                       f"{logged:.6f} in history.csv")
        else:
            reasons.append("history.csv has no val_loss")
        try:
            import keras

            import medivision_tf  # noqa: F401

            keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False)
        except Exception as error:  # noqa: BLE001
            reasons.append(f"model.keras does not load: {type(error).__name__}")
        metrics_path = os.path.join(run_dir, "evaluation", "metrics.json")
        if not os.path.isfile(metrics_path):
            reasons.append("no evaluation/metrics.json")
        else:
            with open(metrics_path) as f:
                metrics = json.load(f)
            keys = sorted(metrics)
            if keys != self.metric_keys:
                reasons.append(f"metrics.json keys {keys} differ from the reference's")
            reasons += _numbers_differ(metrics, self.metrics, "evaluation/metrics.json")
        if list(history.columns) == list(self.history.columns) and len(history) == len(
                self.history):
            # The numbers too: the resumed epochs train on the same batches,
            # draws and optimizer state as the uninterrupted run.
            for column in history.columns:
                for row, (got, want) in enumerate(zip(history[column], self.history[column])):
                    if not _close(got, want):
                        reasons.append(f"history.csv epoch {row} {column} {got!r}, "
                                       f"uninterrupted {want!r}")
                        break
        else:
            reasons.append("history.csv columns or length differ from the reference's")
        files = folder_files(run_dir)
        temporary = sorted(p for p in files if TEMPORARY.search(os.path.basename(p)))
        if temporary:
            reasons.append(f"temporary files left: {temporary}")
        if os.path.isdir(os.path.join(run_dir, "backup")):
            reasons.append("backup/ folder left")
        missing = sorted(self.files - files)
        extra = sorted(files - self.files - set(temporary))
        if missing:
            reasons.append(f"files missing: {missing}")
        if extra:
            reasons.append(f"extra files: {extra}")
        return reasons


def _close(got, want, rtol=1e-4, atol=1e-6):
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return abs(got - want) <= atol + rtol * abs(want)
    return got == want


def _numbers_differ(got, want, where):
    """The numeric leaves of two JSON values that differ beyond round-off."""
    if isinstance(want, dict) and isinstance(got, dict):
        return [reason for key in want if key in got
                for reason in _numbers_differ(got[key], want[key], f"{where}.{key}")]
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [reason for i, (g, w) in enumerate(zip(got, want))
                for reason in _numbers_differ(g, w, f"{where}[{i}]")]
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        if not isinstance(got, (int, float)) or not _close(got, want):
            return [f"{where} {got!r}, uninterrupted {want!r}"]
    return []


def run_reference(data_dir, work, config):
    """The uninterrupted run: its folder, timeline and wall time."""
    run_dir = os.path.join(work, "reference")
    run = Run(train_command(data_dir, run_dir, config), os.path.join(work, "reference.err"))
    returncode, exit_s = run.finish()
    if returncode != 0:
        with open(os.path.join(work, "reference.err")) as f:
            raise RuntimeError(f"The reference run failed ({returncode}):\n{f.read()[-3000:]}")
    events = timeline(run.lines, exit_s)
    total = config["epochs"] + config["fine_tune_epochs"]
    if len(events["epochs"]) != total or None in (events["phase1"], events["phase2"],
                                                   events["trained"], events["last_epoch_end"]):
        raise RuntimeError("The reference run's stdout lacks phase, epoch or 'Trained' lines:\n"
                           + "\n".join(line for _, line in run.lines[-40:]))
    return run_dir, events, list(event_keys(run.lines))


def run_kill(index, kill, data_dir, work, config, reference_keys, attempts=3):
    """One killed run and its rerun; returns the facts of the kill.

    The kill comes `offset_s` after the anchor line, scaled by how fast this
    run reached the anchor compared with the reference (the machine is
    shared: its speed changes from run to run). A run that finishes before
    its kill is started again in a fresh folder with half the offset, up to
    `attempts` times; the attempts are recorded.
    """
    total = config["epochs"] + config["fine_tune_epochs"]
    reference_anchor_s = dict((key, t) for t, key in reference_keys)[kill["anchor"]]
    entry = dict(kill, index=index, attempts=[])
    offset = kill["offset_s"]
    for attempt in range(attempts):
        run_dir = os.path.join(work, f"kill{index:02d}")
        shutil.rmtree(run_dir, ignore_errors=True)
        command = train_command(data_dir, run_dir, config)
        run = Run(command, os.path.join(work, f"kill{index:02d}.err"))
        anchor_s = run.wait_for(kill["anchor"], timeout=1800)
        if anchor_s is None:
            returncode, _ = run.finish()
            entry["attempts"].append({"anchor_s": None, "result": f"exit {returncode}"})
            return dict(entry, killed=False, kill_s=None,
                        phase_at_kill="exited before its anchor", killed_returncode=returncode)
        speed = anchor_s / reference_anchor_s
        delay = offset * speed
        time.sleep(max(0.0, anchor_s + delay - (time.perf_counter() - run.start)))
        if run.process.poll() is None:
            break
        returncode, exit_s = run.finish()
        entry["attempts"].append({"anchor_s": round(anchor_s, 2), "speed": round(speed, 3),
                                  "delay_s": round(delay, 2),
                                  "result": f"exited {returncode} at {exit_s:.1f} s"})
        offset /= 2
    else:
        return dict(entry, killed=False, kill_s=round(exit_s, 2),
                    phase_at_kill="exited before the kill", killed_returncode=returncode)
    kill_s = run.kill()
    returncode, _ = run.finish()
    entry["attempts"].append({"anchor_s": round(anchor_s, 2), "speed": round(speed, 3),
                              "delay_s": round(delay, 2), "result": "killed"})
    state_path = os.path.join(run_dir, "state.json")
    state = None
    if os.path.isfile(state_path):
        try:
            with open(state_path) as f:
                state = json.load(f)
        except ValueError:
            state = "unreadable"
    entry.update(killed=returncode == -signal.SIGKILL, killed_returncode=returncode,
                 kill_s=round(kill_s, 2), phase_at_kill=phase_at(run.lines, kill_s, total),
                 state_at_kill=state,
                 partials_at_kill=sorted(p for p in folder_files(run_dir)
                                         if TEMPORARY.search(os.path.basename(p))))
    rerun = Run(command, os.path.join(work, f"kill{index:02d}.rerun.err"))
    rerun_code, rerun_s = rerun.finish()
    entry.update(rerun_returncode=rerun_code, rerun_s=round(rerun_s, 2),
                 rerun_epochs=[e["epoch"] for e in timeline(rerun.lines, rerun_s)["epochs"]])
    if rerun_code != 0:
        with open(os.path.join(work, f"kill{index:02d}.rerun.err")) as f:
            entry["rerun_stderr"] = f.read()[-2000:]
    return entry


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="killed runs (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill jitter (default: 0)")
    parser.add_argument("--markdown", help="also write the table to this Markdown file")
    parser.add_argument("--keep", help="keep the run folders in this folder (default: removed)")
    args = parser.parse_args(argv)
    config = settings(args)
    start = time.perf_counter()
    work = args.keep or tempfile.mkdtemp(prefix="bench_resume_")
    os.makedirs(work, exist_ok=True)
    try:
        data_dir = os.path.join(work, "digits")
        num_images = write_digits(data_dir, config["classes"], config["images_per_class"],
                                  config["image_size"])
        reference_dir, events, keys = run_reference(data_dir, work, config)
        bounds = segment_bounds(events)
        print(f"Reference run: {events['exit']:.1f} s; " + ", ".join(
            f"{name} {b - a:.1f} s" for name, (a, b) in bounds.items()), flush=True)
        checker = Checker(reference_dir, config)
        reference_reasons = checker(reference_dir)
        if reference_reasons:  # the checks must hold on the run they compare with
            raise RuntimeError(f"The reference run fails its own checks: {reference_reasons}")
        plan = plan_kills(keys, bounds, config["kills"], config["seed"])
        rows = []
        for index, kill in enumerate(plan):
            entry = run_kill(index, kill, data_dir, work, config, keys)
            reasons = []
            if not entry["killed"]:
                reasons.append(f"not killed: {entry['phase_at_kill']} "
                               f"(exit {entry['killed_returncode']})")
            elif entry["rerun_returncode"] != 0:
                reasons.append(f"rerun exited {entry['rerun_returncode']}: "
                               f"{entry.get('rerun_stderr', '')[-300:]}")
            else:
                checker.last_best_loss = None
                reasons = checker(os.path.join(work, f"kill{index:02d}"))
                entry["best_checkpoint_val_loss"] = checker.last_best_loss
            entry["ok"] = not reasons
            entry["reasons"] = reasons
            rows.append(entry)
            print(f"kill {index + 1}/{len(plan)} at {entry['kill_s']} s "
                  f"({entry['phase_at_kill']}): {'ok' if entry['ok'] else 'FAILED'}"
                  + (f" - {'; '.join(reasons)}" if reasons else ""), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results = {
        "benchmark": "resume",
        "description": "medivision train SIGKILLed at timed moments, rerun, compared "
                       "with an uninterrupted run",
        "quick": args.quick,
        "settings": config,
        "command": train_command("DIGITS", "RUN", config)[1:],
        "machine": common.machine_info(),
        "num_images": num_images,
        "reference": {"exit_s": round(events["exit"], 2),
                      "segments_s": {k: [round(a, 2), round(b, 2)] for k, (a, b) in
                                     bounds.items()},
                      "epochs": events["epochs"]},
        "kills": rows,
        "ok": sum(r["ok"] for r in rows),
        "total": len(rows),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    print()
    table = render_table(results)
    print(table)
    common.write_results(results, args.json)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render_page(results))
    return 0 if results["ok"] == results["total"] else 1


def render_page(results):
    """The Markdown page of a run (what `--markdown` writes: results/resume.md)."""
    return (f"# Timed kills of `medivision train`\n\nGenerated by `python "
            f"benchmarks/bench_resume.py{' --quick' if results['quick'] else ''}` on "
            f"{results['machine']['date']} in {results['wall_s'] / 60:.1f} min.\n\n"
            f"{render_table(results)}\n")


def render_table(results):
    """The kills as a Markdown table, and the total "N of M"."""
    config, reference = results["settings"], results["reference"]
    rows = []
    for r in results["kills"]:
        rows.append([
            r["index"] + 1,
            "-" if r["kill_s"] is None else f"{r['kill_s']:.2f}",
            f"{r['segment']}: {r['anchor']} +{r['offset_s']:.2f}"
            + (f" (×{r['attempts'][-1]['speed']:.2f} speed → +{r['attempts'][-1]['delay_s']:.2f})"
               if r["attempts"] and "speed" in r["attempts"][-1] else "")
            + (f", try {len(r['attempts'])}" if len(r["attempts"]) > 1 else ""),
            r["phase_at_kill"],
            ", ".join(str(e) for e in r.get("rerun_epochs", [])) or "none",
            "ok" if r["ok"] else "failed",
            "; ".join(r["reasons"]) or "same final state as the uninterrupted run",
        ])
    table = common.format_table(
        ["#", "kill at (s)", "planned (segment: line + s)", "phase at kill",
         "epochs the rerun trained", "result", "reason"], rows)
    segments = ", ".join(f"{name} {b - a:.1f} s" for name, (a, b) in
                         reference["segments_s"].items())
    return (
        f"{results['num_images']} digits at {config['image_size']}², smallcnn from scratch, "
        f"{config['epochs']} + {config['fine_tune_epochs']} epochs, evaluation on the test "
        f"split. Uninterrupted run: {reference['exit_s']:.1f} s ({segments}). Kill jitter "
        f"seed {config['seed']}.\n\n{table}\n\n"
        f"**{results['ok']} of {results['total']}** killed runs resumed to the final state "
        "of the uninterrupted run."
    )


if __name__ == "__main__":
    sys.exit(main())

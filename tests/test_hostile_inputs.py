"""`scan`, `train`, `predict`, `explain` and the server on a hostile corpus.

Every command whose memory is checked runs as a subprocess with a timeout (no
hang) and reports its peak memory (VmHWM); each hostile case must give its
clear reason, and no command may print a traceback. See `hostile_corpus.py`
for the cases.
"""

import base64
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from hostile_corpus import make_corpus, png_bomb  # noqa: E402

GB = 1024 ** 3
# Peak RSS of this process in bytes: VmHWM (ru_maxrss would keep the forking
# pytest process's peak across exec on Linux).
_PEAK = (
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            return int(line.split()[1]) * 1024\n"
    "    import resource\n"
    "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
)
# Runs medivision's CLI in-process and writes its peak RSS (bytes) to argv[1].
_WRAP = _PEAK + (
    "import atexit, sys\n"
    "out = sys.argv[1]\n"
    "atexit.register(lambda: open(out, 'w').write(str(peak())))\n"
    "from medivision_tf.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def _env():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TF_CONFIG", None)
    return env


def run_cli(tmp, *args, timeout=300):
    """`medivision ARGS` in a subprocess: (returncode, stdout, stderr, peak RSS bytes)."""
    rss_file = os.path.join(tmp, f"rss_{os.getpid()}_{len(os.listdir(tmp))}")
    proc = subprocess.run([sys.executable, "-c", _WRAP, rss_file, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=_env())
    rss = int(open(rss_file).read()) if os.path.exists(rss_file) else None
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    return proc.returncode, proc.stdout, proc.stderr, rss


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    made = make_corpus(tmp_path_factory.mktemp("hostile"))
    yield made
    made.close()


def _bad_cases(corpus):
    return {n: c for n, c in corpus.cases.items() if c.reason not in (None, "hidden")}


def test_the_corpus_has_at_least_30_cases(corpus):
    assert len(corpus.cases) + len(corpus.csvs) >= 30
    assert len(corpus.cases) >= 30


def test_scan_cli_names_every_hostile_file_with_its_reason(corpus, tmp_path):
    report_csv = tmp_path / "report.csv"
    code, out, err, rss = run_cli(tmp_path, "scan", corpus.root, "--report", report_csv,
                                  "--quiet", timeout=180)
    assert code == 0, err[-3000:]
    report = pd.read_csv(report_csv, keep_default_na=False)
    reasons = dict(zip(report["path"], report["reason"]))
    for name, case in corpus.cases.items():
        if case.reason in (None, "hidden"):
            assert case.path not in reasons, (name, reasons.get(case.path))
        else:
            assert reasons.get(case.path) == case.reason, name
    assert len(report) == len(_bad_cases(corpus))
    used = len(corpus.good) + sum(c.reason is None for c in corpus.cases.values())
    assert f"{used} usable, {len(report)} skipped of {used + len(report)} samples" in out
    # One line per report row: a file name cannot split or forge a row.
    lines = out.splitlines()
    assert len(lines) == 1 + 1 + len(report) + 1  # summary, header, rows, "Report:"
    assert "/etc/passwd" in out and "root:x:0:0" not in out  # refused, never read
    assert rss < 1.5 * GB


def test_csv_label_typo_is_refused_with_the_closest_class(corpus, tmp_path, capsys):
    # In-process: a refusal before training measures no memory.
    from medivision_tf.cli import main

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"backbone": "smallcnn", "weights": None, "image_size": 32,
                                  "channels": 1, "epochs": 1, "fine_tune_epochs": 0}))
    capsys.readouterr()
    code = main(["train", corpus.csvs["label_typo.csv"], "--config", str(config),
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "run" / "model.keras").exists()
    assert "'class_b_typo' has 1 image(s)" in err and "closest existing class: 'class_b'" in err


def test_csv_duplicates_and_escapes_are_reported_and_never_split(corpus):
    from medivision_tf.data import as_table, scan
    from medivision_tf.data.checks.source_splits import load_source
    from medivision_tf.training import TrainConfig

    _, report = scan(as_table(corpus.csvs["duplicates.csv"]), verbose=False)
    assert list(report["reason"]) == ["duplicate"] * 12
    splits, _ = load_source(TrainConfig(source=corpus.csvs["duplicates.csv"], val_split=0.2,
                                        test_split=0.2))
    paths = [set(splits[s]["path"]) for s in ("train", "val", "test")]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert sum(map(len, paths)) == len(corpus.good)
    assert splits["train"].attrs["input_report"]["num_used"] == len(corpus.good)
    _, report = scan(as_table(corpus.csvs["escapes.csv"]), verbose=False)
    assert list(report["reason"]) == ["outside_root"] * 3


def test_a_file_listed_under_two_labels_is_never_trained_on(corpus, tmp_path):
    """Every copy of a file with conflicting labels is skipped and named; an
    exact repeat of a row stays a plain duplicate."""
    from medivision_tf.data import as_table, check_file, scan

    table = as_table(corpus.csvs["label_conflict.csv"])
    clean, report = scan(table, verbose=False)
    conflict = report[report["reason"] == "label_conflict"]
    assert len(conflict) == 5 and conflict["path"].nunique() == 2  # 3 + 2 rows of 2 files
    assert "'class_a'" in conflict["detail"].iloc[0] and "'class_b'" in conflict["detail"].iloc[0]
    assert not set(conflict["path"]) & set(clean["path"])
    assert len(clean) == len(corpus.good) - 2
    # What a file holds is never echoed: a link or typo may point at a secret.
    secret = tmp_path / "secret.png"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    reason, detail = check_file(str(secret), decode=False)
    assert reason == "not_image" and detail == "text content" and "root" not in detail


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    config = tmp / "config.json"
    config.write_text(json.dumps({
        "backbone": "smallcnn", "weights": None, "image_size": 32, "channels": 1,
        "epochs": 2, "fine_tune_epochs": 0, "batch_size": 8, "val_split": 0.2,
        "test_split": 0.2, "lstm_units": 8, "attention_units": 8,
    }))
    run = tmp / "run"
    code, out, err, rss = run_cli(tmp, "train", corpus.root, "--config", config, "--out", run,
                                  timeout=420)
    assert code == 0, err[-3000:]
    return {"run": run, "stdout": out, "rss": rss, "tmp": tmp}


def test_train_counts_and_reports_every_skipped_file(corpus, trained):
    run = trained["run"]
    bad = _bad_cases(corpus)
    used = len(corpus.good) + sum(c.reason is None for c in corpus.cases.values())
    total = used + len(bad)  # the linked folder counts as one skipped input
    assert f"{used} of {total} images used; {len(bad)} skipped" in trained["stdout"]
    skipped = pd.read_csv(run / "skipped_files.csv", keep_default_na=False)
    assert dict(zip(skipped["path"], skipped["reason"])) == {c.path: c.reason for c in bad.values()}
    summary = json.loads((run / "inputs.json").read_text())
    assert summary["num_used"] == used and summary["num_skipped"] == len(bad)
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())["summary"]
    assert metrics["num_scored"] == metrics["num_samples"] and metrics["num_skipped"] == 0
    split = pd.read_csv(run / "split.csv") if (run / "split.csv").exists() else None
    if split is not None and "path" in split:
        assert not set(split["path"]) & {c.path for c in bad.values()}
    assert trained["rss"] < 3 * GB  # the bomb was never decoded


def _predict_paths(corpus):
    skip = {"link_dir_out", "link_loop"}  # folders: predict takes files
    return [c.path for n, c in corpus.cases.items() if n not in skip] + corpus.good[:2]


def test_predict_gives_one_line_per_file_and_a_reason_for_each_bad_one(corpus, trained,
                                                                       tmp_path):
    from medivision_tf.cli._text import quote

    paths = _predict_paths(corpus)
    code, out, err, rss = run_cli(tmp_path, "predict", trained["run"] / "model.keras", *paths,
                                  "--quiet", timeout=300)
    assert code == 1, err[-3000:]  # some files skipped
    lines = out.splitlines()
    assert len(lines) == len(paths)
    by_name = {line.split("\t")[0]: line for line in lines}
    for name, case in corpus.cases.items():
        if case.path not in paths:
            continue
        line = by_name[quote(case.path)]
        # Files named on the command line have no root: a link is followed.
        expected = {"outside_root": None, "hidden": None, "duplicate": None}.get(
            case.reason, case.reason)
        if name == "etc_passwd":
            expected = "not_image"  # read, refused on its content
        elif name == "dev_zero":
            expected = "not_regular"  # never opened
        if expected is None:
            assert "\tskipped:" not in line and "top-" in line, (name, line)
        else:
            assert f"\tskipped: {expected} " in line, (name, line)
    quoted = quote(corpus.cases["newline_name"].path)
    assert quoted.startswith('"') and "\\n" in quoted and quoted in by_name  # one line
    assert "skipped" in err and rss < 1.5 * GB


def test_explain_refuses_bad_files_with_a_message(corpus, trained, tmp_path):
    names = ("png_bomb", "one_pixel", "fifo", "text_as_png", "newline_name", "dicom_good")
    paths = [corpus.cases[n].path for n in names]
    code, out, err, rss = run_cli(tmp_path, "explain", trained["run"] / "model.keras", *paths,
                                  "--out", tmp_path / "x", "--quiet", timeout=300)
    assert code == 1, err[-3000:]
    assert "skipped: too_large" in out and "skipped: too_small" in out
    assert "skipped: not_regular" in out and "skipped: not_image" in out
    assert "Wrote 2 overlays" in out and rss < 1.5 * GB
    assert len(out.splitlines()) == len(paths) + 1


_BOMB_PROBE = _PEAK + r"""
import json, sys
import numpy as np
import tensorflow as tf
from medivision_tf.data import load_images

def reset_peak():
    # Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

def read(path, what, loaded):
    try:
        if what == "load_images":
            load_images([path], 32, channels=1)
        elif what == "pipeline":
            from medivision_tf.data import from_numpy, make_dataset
            import pandas as pd
            table = pd.DataFrame({"path": [path, path], "label": [0, 1], "class_name": ["a", "b"]})
            table.attrs["class_names"] = ["a", "b"]
            n = sum(int(x.shape[0]) for x, _ in make_dataset(table, image_size=32, batch_size=2))
            return f"pipeline yielded {n}"
        else:
            data = open(path, "rb").read()
            loaded.signatures["predict_images"](image_bytes=tf.constant([data]))
    except (ValueError, tf.errors.InvalidArgumentError) as error:
        return "refused"
    return "decoded"

bomb, good, export = sys.argv[1:4]
results = {}
for what in ("load_images", "pipeline", "export"):
    loaded = tf.saved_model.load(export) if what == "export" else None
    read(good, what, loaded)  # warm-up: imports, tracing, first allocations
    for name, path in (("normal", good), ("bomb", bomb)):
        reset_peak()
        message = read(path, what, loaded)
        results[f"{what}/{name}"] = [message, peak()]
print(json.dumps(results))
"""


def test_a_png_bomb_costs_the_memory_of_a_normal_image(corpus, exported, tmp_path):
    """Each reader (load_images, the pipeline, the export's predict_images) in
    one fresh process: after a warm-up read of a normal image, the peak RSS is
    reset (/proc/self/clear_refs) before the normal read and before the bomb's,
    so both peaks hold the same process and each read's own growth."""
    bomb, good = corpus.cases["png_bomb"].path, corpus.good[0]
    assert os.path.getsize(bomb) < 500_000  # 20000 x 20000 pixels
    proc = subprocess.run([sys.executable, "-c", _BOMB_PROBE, str(bomb), str(good),
                           str(exported)], capture_output=True, text=True, timeout=300,
                          env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for what in ("load_images", "pipeline", "export"):
        message, bomb_rss = results[f"{what}/bomb"]
        assert message in ("refused", "pipeline yielded 0"), (what, message)
        normal_message, normal_rss = results[f"{what}/normal"]
        assert normal_message in ("decoded", "pipeline yielded 2"), (what, normal_message)
        print(f"{what}: bomb {bomb_rss / 2**20:.0f} MiB, normal {normal_rss / 2**20:.0f} MiB")
        assert bomb_rss < 1.5 * GB and bomb_rss < normal_rss + 200 * 2 ** 20, what


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    import medivision_tf
    from medivision_tf.export import export_saved_model

    model = medivision_tf.load_model(str(trained["run"] / "model.keras"), compile=False)
    return export_saved_model(model, tmp_path_factory.mktemp("export") / "hostile")


@pytest.fixture(scope="module")
def client(exported):
    from fastapi.testclient import TestClient

    from medivision_tf.serving.server import SavedModelPredictor, prepare_app

    predictor = SavedModelPredictor("hostile", os.path.dirname(exported))
    predictor.load()
    with TestClient(prepare_app({"hostile": predictor})) as test_client:
        yield test_client


def _b64(data):
    return {"b64": base64.b64encode(data).decode()}


def test_server_refuses_hostile_requests_with_4xx(client, corpus):
    url = "/v1/models/hostile:predict"
    image = np.full((1, 32, 32, 1), 10.0).tolist()

    def post(body, raw=None):
        response = client.post(url, content=raw if raw is not None else json.dumps(body))
        return response.status_code, response.json()

    assert post({"instances": image})[0] == 200
    boolean = np.full((1, 32, 32, 1), 1.0).tolist()
    boolean[0][3][4][0] = True
    for body, raw, words in [
        ({"instances": boolean}, None, "boolean"),
        (None, json.dumps({"instances": image}).replace("10.0", "NaN", 1), "finite"),
        (None, json.dumps({"instances": image}).replace("10.0", "Infinity", 1), "finite"),
        ({"instances": (np.array(image) - 1e9).tolist()}, None, "0-255"),
        ({"instances": (np.array(image) + 300).tolist()}, None, "0-255"),
        ({"instances": [[[[True]] * 32] * 32]}, None, "boolean"),
    ]:
        status, answer = post(body, raw)
        assert status == 400 and words in answer["error"], answer
    for method in ("get", "put", "delete", "patch"):
        response = getattr(client, method)(url)
        assert response.status_code == 405 and response.headers["allow"] == "POST", method
    assert client.get("/v1/models/hostile/versions/1:predict").status_code == 405
    assert client.get("/v1/models/hostile").status_code == 200
    for name, words in [("png_bomb", "pixel budget"), ("one_pixel", "too small"),
                        ("gif_bomb_header", "pixel budget"), ("jpeg_bomb_header", "pixel budget"),
                        ("text_as_png", "rejected"), ("truncated_png", "rejected")]:
        with open(corpus.cases[name].path, "rb") as handle:
            body = {"signature_name": "predict_images", "instances": [_b64(handle.read())]}
        status, answer = post(body)
        assert status == 400 and words in answer["error"], (name, answer)
    with open(corpus.good[0], "rb") as handle:
        body = {"signature_name": "predict_images", "instances": [_b64(handle.read())]}
    assert post(body)[0] == 200


def test_bomb_png_is_tiny_yet_claims_400_megapixels(tmp_path):
    data = png_bomb(20000, 20000)
    assert len(data) < 500_000
    from medivision_tf.data.io.budget import header_pixels

    assert int(header_pixels(data)) == 400_000_000


def test_names_are_quoted_only_when_they_could_forge_output():
    from medivision_tf.cli._text import quote

    assert quote("scan 1.png") == "scan 1.png"
    assert quote("\u00e9t\u00e9.png") == "\u00e9t\u00e9.png"
    for name in ("a\nb.png", "a\tb", "x\r.png", "\x1b[31m.png", "a\u2028b", '"q.png', " lead"):
        text = quote(name)
        assert text.startswith('"') and text.isprintable() and json.loads(text) == name


def test_pixel_budget_is_configurable_and_regular_files_only(corpus, tmp_path):
    import tensorflow as tf

    from medivision_tf.data import check_file, decode_image, inside_root, make_dataset, scan
    from medivision_tf.data.io.regular_files import describe_file

    good = open(corpus.good[0], "rb").read()  # 32 x 32
    assert decode_image(good, 1, max_pixels=1024).shape == (32, 32, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="pixel budget max_pixels=1000"):
        decode_image(good, 1, max_pixels=1000)
    assert check_file(corpus.good[0], max_pixels=1000)[0] == "too_large"
    assert describe_file("/dev/null")[0] == "not_regular"
    assert describe_file(corpus.cases["fifo"].path) == (
        "not_regular", f"{corpus.cases['fifo'].path!r} is a named pipe (FIFO)")
    assert not inside_root(corpus.cases["link_file_out"].path, corpus.root)
    assert inside_root(corpus.cases["link_file_out"].path, corpus.root, follow_links=True)
    from medivision_tf.data import from_directory

    table = from_directory(corpus.root)
    fifo_and_good = table[table["path"].isin([corpus.cases["fifo"].path, corpus.good[0]])]
    with pytest.raises(ValueError, match="not regular files.*x.png"):
        make_dataset(fifo_and_good, image_size=8)  # never blocks on the FIFO
    clean, report = scan(table, verbose=False, decode=False, max_pixels=10**10)
    assert corpus.cases["png_bomb"].path not in set(report["path"])  # a larger budget
    assert corpus.cases["png_bomb"].path in set(clean["path"])

"""Benchmark code paths on tiny settings (`--quick`): no timing is asserted.

`run_all.py --quick` runs as a user runs it (a subprocess) on the cheapest
benchmarks; the collection of other engineers' scripts and the Markdown
rendering are checked in process with stand-in scripts (no TensorFlow).
The remaining scripts' quick modes (settings, memory, digits) take a minute
or more each on a shared 2-core machine: run them with
`python benchmarks/run_all.py --quick`.
"""

import json
import os
import subprocess
import sys

import pytest
from fast_xla import fast_compile_env

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH_DIR)

import run_all  # noqa: E402  (benchmarks/ is not a package)


def test_run_all_quick_writes_json_and_markdown(tmp_path):
    command = [
        sys.executable, os.path.join(BENCH_DIR, "run_all.py"), "--quick",
        "--only", "head,flops", "--out-dir", str(tmp_path),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["quick"] is True
    for key in ("cpu_model", "cores", "tensorflow", "keras", "date", "bf16_hardware"):
        assert key in results["machine"], key
    assert set(results["benchmarks"]) == {"head", "flops"}

    head = results["benchmarks"]["head"]["results"]
    (row,) = head["rows"]
    for key in ("medivision_images_per_s", "baseline_images_per_s", "overhead_percent",
                "literal_overhead_percent"):
        assert row[key] > -100, key
    # --quick: smallcnn's 128 channels are projected to 64 before the LSTM
    # (the full run: 1280 or 1280 -> 128).
    assert row["literal_params"] > row["medivision_params"] > row["baseline_params"]
    flops = results["benchmarks"]["flops"]["results"]
    medivision, baseline = flops["rows"]
    # The LSTM-attention head adds arithmetic; the profiler sees it (unrolled LSTM).
    assert medivision["forward_flops_per_image"] > baseline["forward_flops_per_image"] > 0
    assert medivision["training_flops_per_image_profiled"] > medivision["forward_flops_per_image"]
    assert 0 < flops["matmul_float32_flops_per_s"]["peak"]

    markdown = (tmp_path / "latest.md").read_text()
    assert markdown.startswith("# MediVision-TF benchmark results")
    for heading in ("## Machine", "## Training throughput", "## FLOPs per image"):
        assert heading in markdown
    assert "head overhead" in markdown and "of matmul peak" in markdown
    assert markdown == run_all.render_markdown(results)


@pytest.fixture
def fake_benchmarks(tmp_path, monkeypatch):
    """Stand-in scripts: one prints a JSON line, one only text, one is absent."""
    (tmp_path / "bench_prints_json.py").write_text(
        "import json\nprint('table')\nprint(json.dumps({'ratio': 1.5}))\n"
    )
    (tmp_path / "bench_prints_text.py").write_text("print('pipeline 120 images/s')\n")
    (tmp_path / "bench_crashes.py").write_text("raise SystemExit('broken')\n")
    monkeypatch.setattr(run_all.common, "BENCH_DIR", str(tmp_path))
    monkeypatch.setattr(run_all, "ALL_BENCHMARKS", {
        "json": ("bench_prints_json.py", "Prints JSON"),
        "text": ("bench_prints_text.py", "Prints text"),
        "crash": ("bench_crashes.py", "Crashes"),
        "absent": ("bench_absent.py", "Not written yet"),
    })
    return tmp_path


def test_other_scripts_are_collected_whatever_they_print(fake_benchmarks):
    entries = {
        name: run_all.run_benchmark(name, quick=True, workdir=str(fake_benchmarks))
        for name in run_all.ALL_BENCHMARKS
    }
    assert entries["json"]["status"] == "ok"
    assert entries["json"]["results"] == {"ratio": 1.5}
    assert entries["text"]["status"] == "ok" and entries["text"]["results"] is None
    assert entries["crash"]["status"] == "failed"
    assert entries["absent"]["status"] == "missing"

    results = {
        "quick": True,
        "wall_s": 1.0,
        "machine": {
            "cpu_model": "test CPU", "cores": 2, "bf16_hardware": False, "amx": False,
            "tensorflow": "x", "keras": "x", "scikit_learn": "x", "python": "3",
            "load_average_1_5_15": [0.0, 0.0, 0.0], "date": "today", "simd": [],
        },
        "benchmarks": entries,
    }
    markdown = run_all.render_markdown(results)
    assert '"ratio": 1.5' in markdown  # no render_table: shown as JSON
    assert "pipeline 120 images/s" in markdown
    assert "broken" in markdown
    assert "`benchmarks/bench_absent.py` is not present yet." in markdown


def test_unknown_benchmark_name_is_rejected(capsys):
    with pytest.raises(SystemExit):
        run_all.main(["--only", "head,warp_drive"])
    assert "warp_drive" in capsys.readouterr().err


def test_compare_throughput_rotates_the_order_of_runners():
    import common

    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    timing = common.compare_throughput(runners, batch_size=4, warmup=1, rounds=3, steps=2)
    timed = calls[3:]  # after one warm-up step each
    rounds = [timed[i:i + 6:2] for i in range(0, 18, 6)]  # first step of each block
    assert rounds == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for name in runners:
        assert len(timing["_blocks"][name]) == 3 and timing[name]["images_per_s"] > 0


def test_bench_pipeline_side_by_side_and_peer_skip(tmp_path, capsys):
    """The side-by-side section on a few tiny files; a peer that cannot be
    installed is skipped with its reason (no timing asserted)."""
    import bench_pipeline

    from medivision_tf.data import from_directory

    bench_pipeline.write_pngs(str(tmp_path / "pngs"), 8, 40)
    table = from_directory(str(tmp_path / "pngs"))
    rates = bench_pipeline.pipeline_comparison(table, batch_size=4, rounds=1)
    assert set(rates) == {"ours, augmented", "ours, no augmentation",
                          "plain tf.data (decode_png + resize)"}
    assert all(rate["wall"] > 0 and rate["cpu"] > 0 for rate in rates.values())
    peers, reason = bench_pipeline.aucmedi_comparison(
        str(tmp_path / "pngs"), 4, "/proc/no-venv-here", rounds=1
    )
    assert peers is None and "venv" in reason
    bench_pipeline.print_comparison(rates, None, reason)
    printed = capsys.readouterr().out
    assert "augmented / unaugmented" in printed and "AUCMEDI skipped:" in printed
    streams = bench_pipeline.stream_comparison(table, batch_size=4, rounds=1)
    assert set(streams) == set(rates)
    assert all(rate["wall"] > 0 and rate["cpu"] > 0 for rate in streams.values())
    bench_pipeline.print_comparison(streams, None, reason, title="repeated streams")
    assert "Side by side, repeated streams" in capsys.readouterr().out


def test_bench_realdata_head_variants_and_paired_table():
    """The head variants end like every MediVision model (trust fits on them);
    the paired table compares each model with the baseline seed by seed."""
    import bench_realdata
    import numpy as np

    from medivision_tf.trust import fit_trust, predict_with_trust

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (24, 28, 28, 1)).astype("float32")
    labels = np.arange(24) % 10
    for name in ("bidirectional", "context"):
        model = bench_realdata.build(name, seed=0)
        names = [layer.name for layer in model.layers]
        assert {"feature_map", "pool", "predictions", "class_labels"} <= set(names)
        assert (name == "bidirectional") == any("bidirectional" in str(type(layer)).lower()
                                                for layer in model.layers)
        assert ("attention_skip" in names) == (name == "bidirectional")
        fit_trust(model, images, labels)
        out = predict_with_trust(model, images[:3])
        assert out["probabilities"].shape == (3, 10)
    with pytest.raises(ValueError, match="Unknown head variant 'wide'"):
        bench_realdata.head_variant("wide", bench_realdata.build("medivision", seed=0))
    deeper = bench_realdata.build("baseline", seed=0, backbone="smallvgg")
    assert "smallvgg_conv4b" in {layer.name for layer in deeper.layers}

    def row(accuracy):
        return {m: 0.5 for m in bench_realdata.METRICS} | {"accuracy": accuracy}

    runs = {"medivision": [row(0.80), row(0.86)], "baseline": [row(0.82), row(0.85)]}
    paired = bench_realdata.paired_differences(runs)
    assert paired["medivision"]["values"] == pytest.approx([-0.02, 0.01])
    assert paired["medivision"]["seeds_at_least_as_accurate"] == 1
    results = {"settings": {"train_images": 6, "val_images": 2, "test_images": 3, "epochs": 1,
                            "seeds": [0, 1], "backbone": "smallvgg"}, "ood_set": "x",
               "paired_vs_baseline": paired,
               "summary": {n: {m: bench_realdata.summarize([r[m] for r in rows])
                               for m in bench_realdata.METRICS} for n, rows in runs.items()}}
    table = bench_realdata.render_table(results)
    assert "-0.0050 ± 0.0212 (-0.0200, +0.0100) | 1 of 2" in table
    assert "smallvgg from scratch" in table
    assert "LAC coverage" not in table  # runs without the LAC figures
    for stats in results["summary"].values():
        stats.update({m: bench_realdata.summarize([0.25, 0.75]) for m in bench_realdata.LAC_METRICS})
    assert "| pooling baseline | 0.500 ± 0.354 | 0.500 ± 0.354 | 0.500 ± 0.354 |" in (
        bench_realdata.render_table(results))


def test_bench_realdata_lac_sets_cover_near_one_minus_alpha():
    """LAC sets fitted on validation probabilities: coverage near 1 - alpha on
    new images of the same distribution, below the accuracy (empty sets)."""
    import bench_realdata
    import numpy as np

    rng = np.random.default_rng(0)

    def draw(n):  # a 95%-accurate classifier over 4 classes
        labels = rng.integers(0, 4, n)
        logits = rng.normal(0, 1, (n, 4))
        logits[np.arange(n), labels] += 4.0
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        return p.astype("float32"), labels

    val_p, val_y = draw(4000)
    test_p, test_y = draw(4000)
    sets = bench_realdata.lac_sets(val_p, val_y, test_p)
    accuracy = (test_p.argmax(1) == test_y).mean()
    coverage = sets[np.arange(len(test_y)), test_y].mean()
    assert accuracy > 0.93
    assert abs(coverage - (1 - bench_realdata.ALPHA)) < 0.02
    assert (sets.sum(1) == 0).mean() > 0.02


def test_bench_realdata_rewrites_json_after_each_run_and_resumes(tmp_path, monkeypatch):
    """A long run keeps every finished model in its JSON (marked partial) and a
    rerun with the same settings trains only what is missing."""
    import json

    import bench_realdata

    calls, interrupt = [], [3]

    def fake_run(name, seed, data, config, ood_images):
        calls.append((name, seed))
        if len(calls) == interrupt[0]:
            raise KeyboardInterrupt  # the third run is interrupted
        return {m: 0.5 for m in bench_realdata.METRICS} | {"accuracy": 0.8 + seed / 100}

    monkeypatch.setattr(bench_realdata, "load_fashion_mnist", lambda: {"train_images": None})
    monkeypatch.setattr(bench_realdata, "load_ood_images", lambda: None)
    monkeypatch.setattr(bench_realdata, "run_one", fake_run)
    out = str(tmp_path / "realdata.json")
    argv = ["--json", out, "--seeds", "0,1", "--models", "medivision,baseline"]
    with pytest.raises(KeyboardInterrupt):
        bench_realdata.main(argv)
    kept = json.load(open(out))
    assert kept["partial"] is True
    assert [len(kept["runs"][n]) for n in ("medivision", "baseline")] == [1, 1]
    assert kept["paired_vs_baseline"]["medivision"]["values"] == [0.0]

    calls.clear()
    interrupt[0] = None
    results = bench_realdata.main(argv)
    assert calls == [("medivision", 1), ("baseline", 1)]  # seed 0 was kept
    assert results["partial"] is False
    assert json.load(open(out))["summary"]["medivision"]["accuracy"]["values"] == [0.8, 0.81]
    with open(out, "w") as f:  # a partial run with other settings is not resumed
        json.dump(kept | {"settings": kept["settings"] | {"epochs": 2}}, f)
    calls.clear()
    bench_realdata.main(argv)
    assert len(calls) == 4


def test_bench_transfer_summary_checks_and_table():
    import bench_transfer

    def run(accuracy, head=None, first=None):
        entry = {"test_accuracy": accuracy, "train_seconds": 1.0}
        if head is not None:
            entry["switch"] = {"last_head_epoch": head, "first_fine_tune_epoch": first}
        return entry

    results = {
        "settings": {"head_epochs": 2, "fine_tune_epochs": 1, "seeds": [0, 1]},
        "machine": {"date": "2026-12-07T00:00:00"},
        "runs": {
            "densenet121/fashion/a": {"0": run(0.80), "1": run(0.82)},
            "densenet121/fashion/b": {"0": run(0.85, 0.80, 0.81), "1": run(0.83, 0.82, 0.79)},
            "densenet121/fashion/c": {"0": run(0.84, 0.7, 0.75), "1": run(0.85, 0.7, 0.76)},
        },
        "cli": {},
    }
    cell = bench_transfer.summary_table(results)["densenet121/fashion"]
    assert cell["b"]["test_accuracy"]["mean"] == pytest.approx(0.84)
    assert cell["b"]["switch_drop"]["mean"] == pytest.approx(0.01)   # (-0.01 + 0.03) / 2
    # (b) 0.84 >= (a) 0.81, but (b) 0.84 < (c) 0.845: the check says so.
    assert cell["checks"] == {"b_at_least_a": True, "b_at_least_c": False,
                              "no_drop_at_switch": True}
    table = bench_transfer.render_table(results)
    assert "0.840 ± 0.014" in table and "(b) ≥ (c) NO" in table
    # The command-line runs: their switch checked against the same 2 points.
    for drop, verdict in ((0.034, "NO"), (0.009, "yes")):
        results["cli"] = {"densenet121": {
            "command": "medivision train /tmp/x/images --backbone densenet121 --weights w.keras",
            "epochs": 10, "fine_tune_epochs": 5, "test_accuracy": 0.88,
            "switch": {"last_head_epoch": 0.99, "first_fine_tune_epoch": 0.99 - drop},
            "train_accuracy_by_epoch": [0.99, 0.99 - drop], "val_accuracy_by_epoch": [0.8, 0.8]}}
        table = bench_transfer.render_table(results)
        assert f"within 2 points: {verdict}" in table and "medivision train FOLDER" in table
    # Two peaks side by side: row (b) and the command-line run of each results file.
    results["summary"] = bench_transfer.summary_table(results)
    earlier = json.loads(json.dumps(results))
    earlier["settings"]["phase2_peak"] = 1e-4
    earlier["summary"]["densenet121/fashion"]["b"]["test_accuracy"]["mean"] = 0.85
    results["settings"]["phase2_peak"] = 3e-5
    for run, drop in ((earlier, 0.034), (results, 0.0)):
        run["cli"]["densenet121"].update(
            epochs=1, switch={"last_head_epoch": 0.99, "first_fine_tune_epoch": 0.99 - drop},
            train_accuracy_by_epoch=[0.99, 0.99 - drop])
    comparison = bench_transfer.render_peak_comparison(results, earlier)
    assert "(b) at peak 1e-04 | (b) at peak 3e-05 (default)" in comparison
    assert "| densenet121/fashion (2 + 1 epochs, 2 seeds) | 0.850 | 0.840 |" in comparison
    assert "| -0.034, lowest 0.956 | +0.000, lowest 0.990 |" in comparison


def test_bench_gpu_quick_runs_on_jax_without_tensorflow(tmp_path):
    """`bench_gpu.py --quick` as on a GPU machine without TensorFlow, here on the
    CPU through JAX (in the test extra): its rows, the LSTM probe, the table (no
    timing asserted; issue 32)."""
    import importlib.util

    import bench_gpu

    if importlib.util.find_spec("jax") is None:
        pytest.skip('jax is not installed: pip install "jax[cpu]" (in the test extra)')
    out = tmp_path / "gpu.json"
    command = [sys.executable, os.path.join(BENCH_DIR, "bench_gpu.py"), "--quick",
               "--json", str(out)]
    # XLA flags that compile about 3x faster on a CPU (tests/fast_xla.py), most
    # of this run; the test checks the rows, not the speed.
    env = fast_compile_env(dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3"))
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["backend"] == "jax" and results["quick"] is True
    assert results["skipped"] == []
    rows = results["rows"]
    assert [(r["backbone"], r["precision"]) for r in rows] == [
        ("smallcnn", "float32"), ("smallcnn", "mixed_bfloat16")]
    for row in rows:
        assert row["tensorflow_imported"] is False and "tensorflow" not in row["modules_loaded"]
        assert row["device"]["backend"] == "jax" and row["device"]["device"].startswith("cpu")
        assert row["lstm_runs_as"].startswith("Keras loop")  # no cuDNN on a CPU
        assert row["outputs_finite"]
        assert row["medivision_params"] > row["pooling_params"]
        for key in ("medivision_train_images_per_s", "pooling_train_images_per_s",
                    "medivision_infer_images_per_s", "pooling_infer_images_per_s"):
            assert row[key] > 0, key
        assert isinstance(row["head_share_of_train_step"], float)
        assert row["medivision_train_peak_bytes"] is None  # no device allocator on a CPU
    table = bench_gpu.render_table(results)
    assert table in completed.stdout  # what it printed is its rendering of the JSON
    assert "--quick: the figures mean nothing" in table and table.count("| smallcnn |") == 2
    assert "TensorFlow imported while measuring: no (jax alone)" in table


def test_bench_unseen_scores_protocol_and_table():
    """bench_unseen's scores on made-up features where the answer is known,
    the choice that never looks at the class it is scored on, and the table
    (the training run itself: `python benchmarks/bench_unseen.py --quick`)."""
    import numpy as np

    import bench_unseen

    rng = np.random.default_rng(0)
    # Three known classes around three centres; unseen images between them
    # (far from every centre in Mahalanobis terms, still confidently logit'ed).
    centres = np.array([[6.0, 0, 0, 0], [0, 6.0, 0, 0], [0, 0, 6.0, 0]])
    labels = np.repeat(np.arange(3), 200)
    known = centres[labels] + rng.normal(0, 1, (600, 4))
    unseen = rng.normal(0, 1, (300, 4)) + np.array([0, 0, 0, 6.0])
    distances = bench_unseen.mahalanobis_scores(known, labels, {"near": known, "far": unseen})
    near, far = distances["near"], distances["far"]
    assert bench_unseen.score_metrics(near, far, np.quantile(near, 0.95))["auroc"] > 0.99

    logits = np.array([[10.0, 0, 0], [1.0, 0.9, 0.8]])
    scores = bench_unseen.logit_scores(logits)
    assert scores["msp"][0] < scores["msp"][1]           # the confident row is less unusual
    assert scores["max_logit"].tolist() == [-10.0, -1.0]
    np.testing.assert_allclose(scores["energy"][0], -np.log(np.exp(logits[0]).sum()))

    kernel = rng.normal(0, 1, (4, 3))
    bias = rng.normal(0, 1, 3)
    fit = bench_unseen.fit_vim(known, kernel, bias, known @ kernel + bias, dims=3)
    assert fit["basis"].shape == (4, 1)
    vim_near = bench_unseen.vim_scores(known, known @ kernel + bias, fit)
    vim_far = bench_unseen.vim_scores(unseen, unseen @ kernel + bias, fit)
    assert np.median(vim_far) > np.median(vim_near)  # the unseen lie off the known subspace

    images = np.arange(2 * 5 * 5, dtype="float32").reshape(2, 5, 5, 1)
    right, left, down, up = bench_unseen.shifted_copies(images, pixels=2)
    assert (right[:, :, :2] == 0).all() and (right[:, :, 2:] == images[:, :, :3]).all()
    assert (up[:, -2:] == 0).all() and (up[:, :3] == images[:, 2:]).all()
    p = np.array([[0.9, 0.1], [0.5, 0.5]])
    np.testing.assert_allclose(bench_unseen.tta_scores(p, [p, p[:, ::-1]]), [0.4, 0.0])

    # The protocol: for class "a" the score best on the others ("b", "c") is
    # "msp", although "energy" is best on "a" itself.
    def scores_of(**auroc):
        return {"accuracy_known": 0.9, "scores": {
            s: {"auroc": auroc.get(s, 0.5), "flagged_unseen": 0.5, "flagged_known": 0.05}
            for s in bench_unseen.SCORES}}

    per_class = {"a": scores_of(energy=0.99, msp=0.6), "b": scores_of(msp=0.9, energy=0.7),
                 "c": scores_of(msp=0.9, energy=0.8)}
    chosen = bench_unseen.choose_without_looking(per_class)
    assert chosen["a"]["score"] == "msp" and chosen["a"]["auroc"] == 0.6
    summary = bench_unseen.summarize(per_class)
    assert summary["scores"]["energy"]["worst_class"] == "b"
    assert summary["protocol"]["worst_auroc"] == 0.6
    results = {"settings": {"epochs": 10, "fine_tune_epochs": 5, "seed": 0},
               "machine": {"date": "2026-12-07T00:00:00"}, "partial": True,
               "datasets": {"digits": {"title": "digits", "classes": per_class,
                                       "summary": summary}}}
    table = bench_unseen.render_table(results)
    # The default is marked (the package's, read without TensorFlow), the
    # earlier default named beside it.
    from medivision_tf.config import DEFAULT_OOD_METHOD

    assert bench_unseen.DEFAULT_SCORE == DEFAULT_OOD_METHOD == "combined"
    assert "| combined (default) |" in table and "| knn |" in table
    assert "(3 of 10 classes held out" in table and "**partial run**" in table
    assert "Default (`combined`) AUROC per held-out class: a 0.50, b 0.50, c 0.50." in table
    assert "Earlier default (`knn`) AUROC per held-out class" in table
    summary_lines = bench_unseen.render_summary(results)
    assert ("- digits, 3 classes held out in turn: the shipped flag (`combined`, the default) "
            "mean AUROC 0.500") in summary_lines
    assert "the earlier default `knn` mean AUROC 0.500" in summary_lines
    assert "partial run" in summary_lines
    # A second run (another seed) adds its own line, named as a check.
    check = {**results, "settings": {**results["settings"], "seed": 1}, "partial": False}
    both = bench_unseen.render_summary(results, check).splitlines()
    assert both[1].startswith("- digits with seed 1 (an independent check), 3 classes")
    assert "seed 0: 2026-12-07; **partial run**, seed 1: 2026-12-07." in both[-1]
    # A results file written before a score was added: that score is left out.
    for row in per_class.values():
        del row["scores"]["mahalanobis_pool"]
    older = bench_unseen.summarize(per_class)
    assert "mahalanobis_pool" not in older["scores"] and older["protocol"]["worst_auroc"] == 0.6
    results["datasets"]["digits"]["summary"] = older
    assert "| mahalanobis_pool |" not in bench_unseen.render_table(results)
    # One from before the default score existed (unseen_augment.json): no default row.
    without = {c: {**r, "scores": {k: v for k, v in r["scores"].items() if k != "combined"}}
               for c, r in per_class.items()}
    results["datasets"]["digits"]["summary"] = bench_unseen.summarize(without)
    old_table = bench_unseen.render_table({**results, "datasets": {"digits": {
        **results["datasets"]["digits"], "classes": without}}})
    assert "(default)" not in old_table and "Earlier default (`knn`)" in old_table
    results["datasets"]["digits"]["summary"] = older
    # --set: train options read as JSON, recorded, named under the table.
    assert bench_unseen.parse_settings(["augment=true", "label_smoothing=0", "loss=focal"]) == {
        "augment": True, "label_smoothing": 0, "loss": "focal"}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        bench_unseen.parse_settings(["augment"])
    results["settings"]["train_options"] = {"augment": True}
    assert "(10 + 5 epochs, augment=True, smallcnn" in bench_unseen.render_table(results)
    # Unrelated images scored too (Fashion-MNIST's models on the digits): two
    # more columns, averaged over the held-out classes, and what they were.
    for far, row in zip((0.9, 0.7, 0.8), per_class.values()):
        for score in row["scores"].values():
            score.update(unrelated_auroc=far, flagged_unrelated=far - 0.1)
    results["datasets"]["digits"].update(summary=bench_unseen.summarize(per_class),
                                         num_unrelated=1797)
    table = bench_unseen.render_table(results)
    assert "| unrelated AUROC | unrelated flagged |" in table
    assert "| 0.800 | 70.0% |" in table.split("| combined (default) |")[1].splitlines()[0]
    assert "scikit-learn's 1,797 handwritten digits" in table
    assert ("`knn` mean AUROC 0.500, worst 0.500, 50% flagged (unrelated images flagged: "
            "`combined` 70%, `knn` 70%)") in bench_unseen.render_summary(results)

"""Runs every benchmark and writes `results/latest.json` and `results/latest.md`.

```
python benchmarks/run_all.py            # full settings (about 15 minutes on 2 cores)
python benchmarks/run_all.py --quick    # tiny settings: checks every code path
python benchmarks/run_all.py --only head,digits --out-dir /tmp/bench
```

Each script runs in its own subprocess (a clean TensorFlow runtime and its own
memory accounting), one after the other so they do not compete for the CPU.
Scripts that follow the common convention (`common.argument_parser`: options
`--quick` and `--json PATH`, a `render_table(results)` function) are read from
their JSON file; for any other script the last JSON object printed on stdout
is taken, and the end of its output is kept. Scripts written by other
engineers (`bench_pipeline.py`, `bench_gradcam.py`, `bench_serving.py`) run
when present; a missing one is listed as such.

`render_markdown(results)` turns the collected results into the Markdown page
(machine, then one section per benchmark) that the project README includes.

`--render-only` runs nothing and imports no TensorFlow: it renders `latest.md` from
`latest.json` and, for the committed results (the default `--out-dir`), every results page
and every generated block of the README and the docs (`blocks.py`: how a block is marked and
how to add one); `--check` renders in memory and fails, listing them, when any differs from
the committed text.

```
python benchmarks/run_all.py --render-only          # rewrite the generated blocks
python benchmarks/run_all.py --render-only --check  # exit 1 when one is stale
```
"""

import argparse
import datetime
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

import blocks
import common

# name -> (script, one-line title). Order: cheapest and most central first.
OWN_BENCHMARKS = {
    "head": ("bench_head.py", "Training throughput: LSTM-attention head vs pooling head"),
    "settings": ("bench_settings.py", "Speed settings: XLA, oneDNN, mixed bfloat16"),
    "memory": ("bench_memory.py", "Peak training memory per backbone"),
    "flops": ("bench_flops.py", "FLOPs per image and share of the CPU's matmul rate"),
    "digits": ("bench_digits.py", "Real-data accuracy: scikit-learn digits"),
    "realdata": ("bench_realdata.py",
                 "Real photographs (Fashion-MNIST): accuracy, calibration, prediction sets, OOD"),
    "decode": ("bench_decode.py",
               "Real medical files: DICOM/NIfTI decode vs pydicom/nibabel, duplicate search"),
}
EXTERNAL_BENCHMARKS = {
    "pipeline": ("bench_pipeline.py", "Input pipeline vs training step"),
    "gradcam": ("bench_gradcam.py", "Batched Grad-CAM vs forward pass vs tf-keras-vis"),
    "serving": ("bench_serving.py", "Serving: SavedModel vs Keras, REST round trip"),
}
ALL_BENCHMARKS = {**OWN_BENCHMARKS, **EXTERNAL_BENCHMARKS}


def script_options(path):
    """Which of `--quick` / `--json` a script accepts (read from its source)."""
    with open(path) as f:
        source = f.read()
    conventional = "common.argument_parser" in source
    return {
        "quick": conventional or '"--quick"' in source,
        "json": conventional or '"--json"' in source,
    }


def last_json_object(text):
    """The last line of `text` that parses as a JSON object, else None."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith(common.RESULT_MARKER):
            line = line[len(common.RESULT_MARKER):]
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def run_benchmark(name, quick, workdir, timeout=1800):
    """Runs one benchmark script in a subprocess and collects what it reports.

    Returns:
        dict with `status` ("ok", "failed", "missing"), `script`, `wall_s`,
        `returncode`, `results` (its JSON, or None) and `stdout_tail`.
    """
    script, title = ALL_BENCHMARKS[name]
    path = os.path.join(common.BENCH_DIR, script)
    entry = {"name": name, "title": title, "script": f"benchmarks/{script}"}
    if not os.path.isfile(path):
        return {**entry, "status": "missing", "results": None}
    options = script_options(path)
    json_path = os.path.join(workdir, f"{name}.json")
    command = [sys.executable, path]
    if quick and options["quick"]:
        command.append("--quick")
    if options["json"]:
        command += ["--json", json_path]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=common.REPO_ROOT,
        )
        returncode, stdout, stderr = completed.returncode, completed.stdout, completed.stderr
    except subprocess.TimeoutExpired as error:
        returncode = None
        stdout = error.stdout.decode() if isinstance(error.stdout, bytes) else (error.stdout or "")
        stderr = f"timed out after {timeout} s"
    wall = time.perf_counter() - start
    results = None
    if os.path.isfile(json_path):
        with open(json_path) as f:
            results = json.load(f)
    if results is None:
        results = last_json_object(stdout)
    status = "ok" if returncode == 0 else "failed"
    print(stdout.rstrip(), flush=True)
    if status != "ok":
        print(f"!! {name} failed (exit {returncode}):\n{stderr[-3000:]}", flush=True)
    return {
        **entry,
        "status": status,
        "wall_s": round(wall, 1),
        "returncode": returncode,
        "results": results,
        "stdout_tail": _without_log_lines(stdout)[-4000:],
        "stderr_tail": "" if status == "ok" else stderr[-4000:],
    }


def _without_log_lines(text):
    """`text` without TensorFlow/absl log lines (they start with I0000 etc.)."""
    prefixes = ("I0000", "W0000", "E0000", "WARNING: All log messages")
    return "\n".join(l for l in text.splitlines() if not l.startswith(prefixes))


def render_markdown(results):
    """The Markdown page of a `run_all` results dict (what latest.md holds).

    Each benchmark's section is drawn by its script's own `render_table`
    (imported from the script file); a script without one is shown as JSON.
    """
    machine = results["machine"]
    lines = [
        "# MediVision-TF benchmark results",
        "",
        f"Generated by `python benchmarks/run_all.py{' --quick' if results['quick'] else ''}` "
        f"on {machine['date']} in {results['wall_s'] / 60:.1f} min. Every figure below comes "
        "from this run; ratios compare MediVision with a baseline measured in the same "
        "process.",
    ]
    if results["quick"]:
        lines += ["", "**Quick mode: tiny settings that check the code paths; the figures mean "
                  "nothing.**"]
    lines += [
        "",
        "## Machine",
        "",
        common.format_table(
            ["CPU", "cores", "bf16 in hardware", "AMX", "TensorFlow", "Keras",
             "scikit-learn", "Python", "load average (1/5/15 min) at start", "date"],
            [[machine["cpu_model"], machine["cores"], machine["bf16_hardware"],
              machine["amx"], machine["tensorflow"], machine["keras"],
              machine["scikit_learn"], machine["python"],
              " / ".join(str(x) for x in machine["load_average_1_5_15"] or []),
              machine["date"]]],
        ),
        "",
        f"SIMD flags: {', '.join(machine['simd']) or 'none found'}.",
    ]
    for name, entry in results["benchmarks"].items():
        lines += ["", f"## {entry['title']}", ""]
        if entry["status"] == "missing":
            lines.append(f"`{entry['script']}` is not present yet.")
            continue
        status = "ok" if entry.get("returncode") == 0 else "failed"
        lines.append(f"`{entry['script']}` ({status}, {entry['wall_s']:.0f} s)")
        lines.append("")
        if entry["results"] is None:
            if status == "ok":  # a script that prints a table but writes no JSON
                output = _without_log_lines(entry.get("stdout_tail") or "").strip()
                lines += ["Its output:", "", "```", output[-3000:], "```"]
            else:
                output = entry.get("stderr_tail") or entry.get("stdout_tail") or ""
                lines += ["Failed. End of its output:", "", "```",
                          _without_log_lines(output).strip()[-1500:], "```"]
            continue
        lines.append(_render_section(entry))
    return "\n".join(lines) + "\n"


def _render_section(entry):
    module_name = os.path.splitext(os.path.basename(entry["script"]))[0]
    if common.BENCH_DIR not in sys.path:  # render_markdown called from elsewhere
        sys.path.insert(0, common.BENCH_DIR)
    try:
        module = importlib.import_module(module_name)
        return module.render_table(entry["results"])
    except Exception as error:  # noqa: BLE001 - fall back to the raw JSON
        body = json.dumps(entry["results"], indent=2, default=str)
        return f"(no table: {type(error).__name__}: {error})\n\n```json\n{body[:6000]}\n```"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings in every script (checks code paths)")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(ALL_BENCHMARKS)}")
    parser.add_argument("--skip-external", action="store_true",
                        help="run only this package's own benchmarks, not "
                        f"{', '.join(EXTERNAL_BENCHMARKS)}")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: rewrite latest.md from the latest.json in --out-dir "
                        "and (default --out-dir) every generated block of the README and docs "
                        "from the committed results; no TensorFlow")
    parser.add_argument("--check", action="store_true",
                        help="with --render-only: write nothing; exit 1 listing every results "
                        "page or generated block that differs from its rendering")
    parser.add_argument("--out-dir", default=os.path.join(common.BENCH_DIR, "results"),
                        help="where latest.json and latest.md go (default: benchmarks/results)")
    args = parser.parse_args(argv)
    json_path = os.path.join(args.out_dir, "latest.json")
    md_path = os.path.join(args.out_dir, "latest.md")
    default_out = os.path.join(common.BENCH_DIR, "results")
    committed = os.path.abspath(args.out_dir) == os.path.abspath(default_out)
    if args.check and not args.render_only:
        parser.error("--check goes with --render-only")
    if args.render_only:
        if args.check:
            if not committed:
                parser.error("--check checks the committed results: leave --out-dir out")
            differing = blocks.stale()
            for item in differing:
                print(f"stale: {item}")
            print(f"{len(differing)} stale; render them with `{blocks.COMMAND}`."
                  if differing else "Every generated block and results page is current.")
            return 1 if differing else 0
        if committed:
            blocks.render_all()
            return 0
        with open(json_path) as f:
            results = json.load(f)
        with open(md_path, "w") as f:
            f.write(render_markdown(results))
        print(f"Wrote {md_path} from {json_path}.")
        return 0
    names = list(OWN_BENCHMARKS if args.skip_external else ALL_BENCHMARKS)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(ALL_BENCHMARKS))
        if unknown:
            parser.error(f"Unknown benchmarks {unknown}. Choose from: {', '.join(ALL_BENCHMARKS)}")
        names = [n for n in names if n in wanted]

    machine = common.machine_info()
    start = time.perf_counter()
    benchmarks = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            benchmarks[name] = run_benchmark(name, args.quick, workdir)
    try:
        load_end = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load_end = None
    results = {
        "quick": args.quick,
        "machine": machine,
        "load_average_at_end": load_end,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - start, 1),
        "benchmarks": benchmarks,
    }
    os.makedirs(args.out_dir, exist_ok=True)
    common.write_results(results, json_path)
    markdown = render_markdown(results)
    with open(md_path, "w") as f:
        f.write(markdown)
    # Only a full run into the default folder speaks for the README and the docs.
    if not args.quick and committed:
        blocks.render_all()
    failed = [n for n, e in benchmarks.items() if e["status"] == "failed"]
    print(f"\nWrote {json_path} and {md_path} ({results['wall_s'] / 60:.1f} min)."
          + (f" Failed: {', '.join(failed)}." if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

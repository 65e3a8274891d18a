"""The Colab tutorials in notebooks/: committed clean, and runnable top to bottom.

Each notebook is executed with nbclient in a Python kernel of *this*
interpreter (a kernelspec written to a temporary JUPYTER_PATH, so it works in
a fresh `.venv` as in CI and whatever kernels the user has installed), with
MEDIVISION_NOTEBOOK_QUICK=1 (tiny settings) and its files written under a
temporary folder.
"""

import importlib.util
import json
import os
import signal
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = (
    "01_quickstart.ipynb",
    "02_train_on_your_dataset.ipynb",
    "03_explain_with_gradcam.ipynb",
    "04_export_to_tf_serving.ipynb",
)
BADGE_URL = "https://colab.research.google.com/github/medivision-tf/medivision-tf/blob/main/notebooks/{}"
PIP_LINE = '%pip install -q "medivision-tf[serve] @ git+https://github.com/medivision-tf/medivision-tf"'
KERNEL_NAME = "medivision-notebook-test"
CELL_TIMEOUT_S = 600


def _read(filename):
    with open(os.path.join(NOTEBOOK_DIR, filename), encoding="utf-8") as f:
        return nbformat.read(f, as_version=4)


def _builder():
    spec = importlib.util.spec_from_file_location(
        "_build_notebooks", os.path.join(NOTEBOOK_DIR, "_build_notebooks.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# === The committed files ===


def test_the_four_notebooks_exist_and_are_listed_in_the_readme():
    present = sorted(f for f in os.listdir(NOTEBOOK_DIR) if f.endswith(".ipynb"))
    assert present == sorted(NOTEBOOKS)
    with open(os.path.join(NOTEBOOK_DIR, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for filename in NOTEBOOKS:
        assert filename in readme, filename
    assert "MEDIVISION_NOTEBOOK_QUICK" in readme


@pytest.mark.parametrize("filename", NOTEBOOKS)
def test_committed_clean_with_badge_and_install_cell(filename):
    notebook = _read(filename)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{filename}: a code cell has outputs"
            assert cell.execution_count is None, f"{filename}: a code cell has an execution count"
    first, second = notebook.cells[0], notebook.cells[1]
    assert first.cell_type == "markdown"
    assert first.source.startswith("# ")
    assert BADGE_URL.format(filename) in first.source
    assert "colab-badge.svg" in first.source
    assert "What you will learn" in first.source
    # The install cell: pip installs the package from its repository, skipped
    # when medivision_tf is already importable.
    assert second.cell_type == "code"
    assert PIP_LINE in second.source
    assert 'find_spec("medivision_tf") is None' in second.source
    sources = "\n".join(c.source for c in notebook.cells)
    assert "MEDIVISION_NOTEBOOK_QUICK" in sources and "MEDIVISION_NOTEBOOK_WORKDIR" in sources
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_notebooks_match_their_build_script():
    """notebooks/_build_notebooks.py generates them: edit it, then rerun it."""
    built = _builder().build()
    assert sorted(built) == sorted(NOTEBOOKS)
    for filename, notebook in built.items():
        committed = _read(filename)
        assert [(c.cell_type, c.source) for c in committed.cells] == [
            (c.cell_type, c.source) for c in notebook.cells
        ], f"{filename} differs from _build_notebooks.py: run python notebooks/_build_notebooks.py"
        assert committed.metadata == notebook.metadata, filename


# === Execution ===


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec running this interpreter, and the notebooks' quick settings."""
    jupyter_dir = tmp_path / "jupyter"
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (medivision tests)",
        "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_dir))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter_runtime"))
    monkeypatch.setenv("MEDIVISION_NOTEBOOK_QUICK", "1")
    work_dir = tmp_path / "work"
    monkeypatch.setenv("MEDIVISION_NOTEBOOK_WORKDIR", str(work_dir))
    monkeypatch.delenv("MEDIVISION_DATASET_DIR", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    run_dir = tmp_path / "cwd"
    run_dir.mkdir()
    return {"cwd": run_dir, "work": work_dir}


def _stop_leftover_server(work_dir):
    """Notebook 04 writes its server's pid; stop it if a failed cell left it running."""
    pid_file = work_dir / "server.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    for _ in range(40):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.25)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _errors(notebook):
    return [
        output
        for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.get("outputs", []) if output.get("output_type") == "error"
    ]


@pytest.mark.parametrize("filename", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(filename, kernel_env):
    notebook = _read(filename)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(kernel_env["cwd"])}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{filename} failed:\n{str(error)[-6000:]}")
    finally:
        _stop_leftover_server(kernel_env["work"])
    assert not _errors(notebook)
    # Every code cell ran, and the pictures were shown inline.
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code_cells)
    images = [
        o for c in code_cells for o in c.outputs
        if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
    ]
    assert images, f"{filename} showed no picture"
    # Everything it wrote went to the work folder, not the current directory.
    assert os.listdir(kernel_env["cwd"]) == []
    assert os.listdir(kernel_env["work"])
    if filename.startswith("04"):
        log = (kernel_env["work"] / "server.log").read_text()
        assert "Uvicorn running on http://127.0.0.1" in log
        stopped = [c for c in code_cells if "server.terminate()" in c.source][-1]
        assert "Server stopped" in "".join(o.get("text", "") for o in stopped.outputs)

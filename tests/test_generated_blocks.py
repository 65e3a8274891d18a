"""Published figures come from committed results: every generated block is current.

`benchmarks/blocks.py` renders each block of README.md, docs/*.md, benchmarks/README.md and
notebooks/README.md (and the results pages latest.md, resume.md) from the files committed
under `benchmarks/results/`; `python benchmarks/run_all.py --render-only --check` fails when
one differs. The check runs here in a process where TensorFlow and the package cannot be
imported: rendering needs neither.
"""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(REPO, "benchmarks")
sys.path.insert(0, BENCH_DIR)

import blocks  # noqa: E402  (benchmarks/ is not a package)

# Refuses TensorFlow (and everything that would bring it) before running the check.
_CHECK_WITHOUT_TENSORFLOW = r"""
import importlib.abc, sys

HEAVY = ("tensorflow", "keras", "medivision_tf", "jax", "torch", "tf_keras_vis")

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"rendering the generated blocks imported {name!r}")

sys.meta_path.insert(0, Refuse())
sys.path.insert(0, sys.argv[1])
import run_all

code = run_all.main(["--render-only", "--check"])
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
assert not loaded, loaded
sys.exit(code)
"""


def test_every_generated_block_equals_its_rendering_without_tensorflow():
    done = subprocess.run([sys.executable, "-c", _CHECK_WITHOUT_TENSORFLOW, BENCH_DIR],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, (
        "Stale generated blocks: run `python benchmarks/run_all.py --render-only` and commit.\n"
        + done.stdout[-3000:] + done.stderr[-3000:])
    assert "Every generated block and results page is current." in done.stdout


def test_the_documents_hold_blocks_and_every_renderer_is_used():
    names = set()
    for path in blocks.documents():
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            names.update(name for name, _, _ in blocks.find_blocks(f.read(), path))
    assert "README.md" in blocks.documents() and "docs/data.md" in blocks.documents()
    assert names == set(blocks.RENDERERS)


@pytest.fixture
def fake_project(tmp_path, monkeypatch):
    """A tmp repository root with one results file and one renderer ("score")."""
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "score.json").write_text('{"accuracy": 0.875}')
    monkeypatch.setattr(blocks, "RESULTS_DIR", str(results))
    monkeypatch.setattr(blocks, "PAGES", {})
    monkeypatch.setattr(blocks, "RENDERERS", {})
    blocks.renderer("score", "score.json")(lambda score: f"| accuracy |\n|---|\n| {score['accuracy']:.3f} |")
    (tmp_path / "docs").mkdir()
    return tmp_path


def test_a_stale_or_empty_block_is_listed_then_rendered_in_place(fake_project):
    readme = fake_project / "README.md"
    readme.write_text("# Title\n\nBefore.\n\n<!-- generated:score -->\n| accuracy |\n|---|\n"
                      "| 0.99 |\n<!-- end generated:score -->\n\nAfter.\n")
    doc = fake_project / "docs" / "x.md"
    doc.write_text("Text\n<!-- generated:score -->\n<!-- end generated:score -->\n")
    assert blocks.stale(str(fake_project)) == ["README.md: generated:score",
                                                "docs/x.md: generated:score"]
    assert blocks.render_all(str(fake_project), verbose=False) == ["README.md", "docs/x.md"]
    marker = ("<!-- generated:score from benchmarks/results/score.json by "
              "`python benchmarks/run_all.py --render-only`; do not edit -->")
    block = f"{marker}\n| accuracy |\n|---|\n| 0.875 |\n<!-- end generated:score -->"
    assert readme.read_text() == f"# Title\n\nBefore.\n\n{block}\n\nAfter.\n"
    assert doc.read_text() == f"Text\n{block}\n"
    assert blocks.stale(str(fake_project)) == []
    # A hand edit inside the block is stale again.
    readme.write_text(readme.read_text().replace("0.875", "0.880"))
    assert blocks.stale(str(fake_project)) == ["README.md: generated:score"]


@pytest.mark.parametrize("text, message", [
    ("<!-- generated:score -->\n| 1 |\n", "no end marker"),
    ("<!-- generated:missing -->\n<!-- end generated:missing -->\n", "no renderer.*'generated:missing'"),
    ("<!-- generated:score -->\n<!-- generated:score2 -->\n<!-- end generated:score2 -->\n"
     "<!-- end generated:score -->\n", "starts inside"),
])
def test_malformed_blocks_are_refused_naming_the_file(fake_project, text, message):
    (fake_project / "README.md").write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        blocks.stale(str(fake_project))
    assert "README.md" in str(error.value)


def test_markers_inside_a_code_block_are_an_example_not_a_block(fake_project):
    text = ("How to add one:\n```\n<!-- generated:unknown -->\n<!-- end generated:unknown -->\n"
            "```\n<!-- generated:score -->\n<!-- end generated:score -->\n")
    (fake_project / "README.md").write_text(text)
    assert [name for name, _, _ in blocks.find_blocks(text)] == ["score"]
    assert blocks.render_all(str(fake_project), verbose=False) == ["README.md"]
    assert "<!-- generated:unknown -->\n<!-- end generated:unknown -->" in (
        fake_project / "README.md").read_text()


def test_a_renderer_no_document_uses_is_refused(fake_project):
    (fake_project / "README.md").write_text("No blocks.\n")
    with pytest.raises(ValueError, match="no document uses.*score"):
        blocks.stale(str(fake_project))


def test_nested_pages_move_headings_down_but_not_inside_code():
    text = "# Results\n\n## Table\n```\n# a comment in output\n```\n| a |"
    assert blocks.shift_headings(text) == (
        "### Results\n\n#### Table\n```\n# a comment in output\n```\n| a |")

"""No silent skips: `skip_policy.py` prints each skip, and strict runs fail on unlisted ones.

An inner pytest run (its own rootdir, only the `skip_policy` plugin, two xdist workers as CI
uses, and one in process) on a small project with one allowed skip, one unlisted skip and one module skipped at
import; no TensorFlow is imported.
"""

import os
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS)

from allowed_skips import ALLOWED_SKIPS  # noqa: E402
from skip_policy import allowed_entry  # noqa: E402

ALLOWED_ID, ALLOWED_REASON = (
    "tests/test_data_formats.py::test_compressed_dicom_error_advice_survives_the_scan_report",
    "a 12-bit JPEG plugin (pylibjpeg-libjpeg) is installed here",
)


def test_each_allow_list_entry_has_a_comment_and_valid_patterns():
    import re

    with open(os.path.join(TESTS, "allowed_skips.py"), encoding="utf-8") as f:
        source = f.read()
    entries = source.split("ALLOWED_SKIPS = [", 1)[1]
    assert entries.count("    # ") >= len(ALLOWED_SKIPS)  # a comment per entry
    assert len(ALLOWED_SKIPS) <= 5  # short: install what a test needs instead
    for pattern, reason in ALLOWED_SKIPS:
        assert pattern.startswith("tests/test_") and re.compile(reason)
    assert allowed_entry(ALLOWED_ID, ALLOWED_REASON) == 0
    assert allowed_entry(ALLOWED_ID, "JPEG-lossy.dcm is missing") is None  # another reason
    assert allowed_entry("tests/test_data_formats.py::test_other", ALLOWED_REASON) is None


@pytest.fixture
def project(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tests / "test_data_formats.py").write_text(
        "import pytest\n\n"
        "def test_compressed_dicom_error_advice_survives_the_scan_report():\n"
        f"    pytest.skip({ALLOWED_REASON!r})\n\n"
        "def test_passes():\n    assert True\n")
    return tmp_path


def _run(project, strict, workers=2):
    env = dict(os.environ, PYTHONPATH=TESTS, MEDIVISION_STRICT_SKIPS="1" if strict else "0")
    command = [sys.executable, "-m", "pytest", "-p", "skip_policy", "-p", "no:cacheprovider",
               "-n", str(workers), "--dist", "loadfile", "-q", str(project / "tests")]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stdout


def test_allowed_skips_pass_and_are_listed(project):
    code, out = _run(project, strict=True, workers=0)  # in process (the xdist case below)
    assert code == 0, out
    assert f"allowed: {ALLOWED_ID}: {ALLOWED_REASON}" in out
    assert "1 skip(s), all in tests/allowed_skips.py." in out


def test_an_unlisted_skip_fails_a_strict_run_and_is_named(project):
    (project / "tests" / "test_more.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.skipif(True, reason='dataset-fashion-mnist is not installed')\n"
        "def test_needs_data():\n    pass\n")
    (project / "tests" / "test_module.py").write_text(
        "import pytest\n\nmissing = pytest.importorskip('no_such_module_here')\n\n"
        "def test_never_runs():\n    pass\n")
    code, out = _run(project, strict=True)
    assert code == 1, out
    assert ("NOT ALLOWED: tests/test_more.py::test_needs_data: "
            "dataset-fashion-mnist is not installed") in out
    assert "NOT ALLOWED: tests/test_module.py: could not import 'no_such_module_here'" in out
    assert "FAILED: 2 skip(s) not in tests/allowed_skips.py" in out
    # Outside CI the same run passes, and still names them.
    code, out = _run(project, strict=False)
    assert code == 0, out
    assert "2 skip(s) not in tests/allowed_skips.py: CI (MEDIVISION_STRICT_SKIPS=1) fails" in out

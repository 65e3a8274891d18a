"""A pytest plugin: every skip is printed with its reason; in CI only the allowed ones pass.

`conftest.py` imports these hooks. At the end of a run, section "skips" lists each skip
(test id and reason) as allowed or NOT ALLOWED by `allowed_skips.py`. With
`MEDIVISION_STRICT_SKIPS=1` (`.ci/run` sets it) a run with a skip that no entry allows
fails (exit 1) even when every test passed. Works with pytest-xdist: the controller sees
the workers' skip reports, a module skipped at import included.
"""

import fnmatch
import os
import re

import pytest

from allowed_skips import ALLOWED_SKIPS

STRICT_SKIPS_VARIABLE = "MEDIVISION_STRICT_SKIPS"
_SKIPS = {}  # (node id, reason) -> allow-list entry index or None


def _skip_reason(report):
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def allowed_entry(nodeid, reason, allowed=ALLOWED_SKIPS):
    """The index of the allow-list entry that covers this skip, or None."""
    for index, (pattern, reason_pattern) in enumerate(allowed):
        if fnmatch.fnmatchcase(nodeid, pattern) and re.search(reason_pattern, reason):
            return index
    return None


def _record_skip(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        _SKIPS[(report.nodeid, reason)] = allowed_entry(report.nodeid, reason)


def pytest_runtest_logreport(report):
    _record_skip(report)


def pytest_collectreport(report):  # a module skipped at import (pytest.importorskip)
    _record_skip(report)


def _is_xdist_worker(config):
    return hasattr(config, "workerinput")


def _strict():
    return os.environ.get(STRICT_SKIPS_VARIABLE, "") not in ("", "0")


def pytest_sessionfinish(session, exitstatus):
    if _is_xdist_worker(session.config) or not _strict():
        return
    if any(entry is None for entry in _SKIPS.values()) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _is_xdist_worker(config):
        return
    write = terminalreporter.write_line
    terminalreporter.section("skips")
    if not _SKIPS:
        write("No test was skipped.")
        return
    for (nodeid, reason), entry in sorted(_SKIPS.items()):
        label = "allowed" if entry is not None else "NOT ALLOWED"
        write(f"{label}: {nodeid}: {reason}")
    refused = sum(entry is None for entry in _SKIPS.values())
    where = "tests/allowed_skips.py"
    if not refused:
        write(f"{len(_SKIPS)} skip(s), all in {where}.")
    elif _strict():
        write(f"FAILED: {refused} skip(s) not in {where} ({STRICT_SKIPS_VARIABLE}=1): install what "
              "they need, or list them there with the reason.", red=True, bold=True)
    else:
        write(f"{refused} skip(s) not in {where}: CI ({STRICT_SKIPS_VARIABLE}=1) fails on them.",
              yellow=True, bold=True)

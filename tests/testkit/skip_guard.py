"""A pytest plugin: no quiet skips. Every skipped test is listed with its reason at the end of the run, and
the run fails unless each reason starts with `absent:` (something the machine really lacks, said so)."""

from __future__ import annotations

import pytest

# A skip passes CI only when what it needs is really absent from the machine, and it says so: its reason must
# start with this. Any other skip (or a skip without a reason) fails the run, with the reasons printed.
ABSENCE_PREFIX = "absent:"


def _skip_reasons(terminal: object) -> list[str]:
    reasons = []
    for report in getattr(terminal, "stats", {}).get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons.append(f"{report.nodeid}: {reason.removeprefix('Skipped: ')}")
    return reasons


def pytest_terminal_summary(terminalreporter: object, exitstatus: int, config: pytest.Config) -> None:
    reasons = _skip_reasons(terminalreporter)
    if not reasons:
        return
    quiet = [reason for reason in reasons if f": {ABSENCE_PREFIX}" not in reason]
    terminalreporter.section("skipped tests")  # type: ignore[attr-defined]
    for reason in reasons:
        terminalreporter.write_line(reason)  # type: ignore[attr-defined]
    if quiet:
        terminalreporter.write_line(  # type: ignore[attr-defined]
            f"{len(quiet)} test(s) skipped without a real absence ('{ABSENCE_PREFIX} ...'): the run fails.",
            red=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    quiet = [reason for reason in _skip_reasons(terminal) if f": {ABSENCE_PREFIX}" not in reason]
    if quiet and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

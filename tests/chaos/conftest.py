"""The chaos suite's table: every fault test adds a row; the run ends by printing them (``make chaos``)."""

from __future__ import annotations

import pytest

from tests.chaos.harness import Row, markdown_table

ROWS: list[Row] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ROWS:
        terminalreporter.write_sep("=", "chaos table (this machine, this run)")
        terminalreporter.write_line(markdown_table(ROWS))

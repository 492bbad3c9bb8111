"""Fixtures of the chart checks: the real helm binary, installed once per session if missing.

The checks need the dev dependencies kubernetes-validate and pyyaml; without them they are
not collected, and the session header and summary say so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

MISSING = [
    name for name in ("yaml", "kubernetes_validate") if importlib.util.find_spec(name) is None
]
NOTICE = f"chart checks not collected: missing dev dependencies {MISSING}"

if MISSING:
    collect_ignore_glob = ["test_chart_*.py"]


def pytest_report_header() -> str | None:
    return NOTICE if MISSING else None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MISSING:
        terminalreporter.write_line(NOTICE, yellow=True, bold=True)


@pytest.fixture(scope="session", autouse=True)
def helm_binary() -> Path:
    """The real helm in .local/bin (deploy/tools/install-helm.sh installs it when missing)."""
    from .chartlib import ensure_helm

    return ensure_helm()

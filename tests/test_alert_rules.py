"""The chart's alert rules pass promtool, and each is unit-tested firing and not firing;
its dashboards use the datasource variable and no hard-coded namespace."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from promsupport import tool

ROOT = Path(__file__).parents[1]
CHART = ROOT / "deploy" / "helm" / "streamer"
ALERTS = CHART / "files" / "alerts.yaml"
UNIT_TESTS = Path(__file__).parent / "prometheus" / "alerts_test.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SELECTOR = re.compile(r"[a-z_:]+\{([^}]*)\}")
NAMESPACE_MATCHER = re.compile(r"(?<![$\w])namespace\s*[=!]")


def rules() -> list[dict[str, object]]:
    """Every alerting rule in the chart's alerts file."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_rules() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_promtool_unit_tests_pass() -> None:
    tested = promtool("test", "rules", str(UNIT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_each_alert_is_unit_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} always fires"


def test_each_alert_has_a_summary_and_a_runbook_paragraph() -> None:
    headings = {
        re.sub(r"[^a-z0-9-]", "", line.lstrip("#").strip().lower().replace(" ", "-"))
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["summary"]
        page, _, anchor = annotations["runbook"].partition("#")
        assert (ROOT / page) == RUNBOOKS
        assert anchor == str(rule["alert"]).lower()
        assert anchor in headings


def test_dashboards_use_the_datasource_variable_and_no_fixed_namespace() -> None:
    boards = sorted((CHART / "dashboards").glob("*.json"))
    assert [board.name for board in boards] == ["streamer-jobs.json", "streamer-streams.json"]
    for path in boards:
        board = json.loads(path.read_text())
        variables = {variable["name"]: variable for variable in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        panels = [panel for panel in board["panels"] if panel["type"] != "row"]
        assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
        for panel in panels:
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                for labels in SELECTOR.findall(target["expr"]):
                    assert 'namespace=~"$namespace"' in labels, (panel["title"], target["expr"])
                    matchers = NAMESPACE_MATCHER.findall(labels)
                    assert len(matchers) == 1, (panel["title"], target["expr"])

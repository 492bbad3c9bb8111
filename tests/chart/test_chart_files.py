"""Dashboards (dashboards/*.json) and alerts (files/alerts.yaml) dropped into the chart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from .chartlib import CHART_DIR, of_kind, render

ALERTS = {
    "groups": [
        {
            "name": "streamer",
            "rules": [
                {
                    "alert": "StreamerEdgeDown",
                    "expr": 'up{job=~".*streamer-edge"} == 0',
                    "for": "5m",
                    "labels": {"severity": "critical"},
                    "annotations": {"summary": "Edge {{ $labels.instance }} is down"},
                }
            ],
        }
    ],
}


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    """A copy of the chart without any dashboards or alerts."""
    copy = tmp_path / "streamer"
    shutil.copytree(CHART_DIR, copy)
    shutil.rmtree(copy / "dashboards", ignore_errors=True)
    (copy / "files" / "alerts.yaml").unlink(missing_ok=True)
    return copy


def test_without_files_nothing_is_rendered(chart: Path) -> None:
    docs = render(None, "metrics.prometheusRule.enabled=true", chart=chart)
    assert of_kind(docs, "PrometheusRule") == []
    assert [
        d for d in of_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]
    ] == []


def test_each_dashboard_becomes_a_labelled_config_map(chart: Path) -> None:
    (chart / "dashboards").mkdir()
    dashboards = {"Streamer Overview.json": {"title": "Streamer"}, "nats.json": {"title": "NATS"}}
    for name, content in dashboards.items():
        (chart / "dashboards" / name).write_text(json.dumps(content, indent=2))
    docs = render(None, "metrics.dashboards.extraLabels.team=streaming", chart=chart)
    maps = [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard")
    ]
    assert sorted(m["metadata"]["name"] for m in maps) == [
        "demo-streamer-dashboard-nats",
        "demo-streamer-dashboard-streamer-overview",
    ]
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["labels"]["team"] == "streaming"
        ((name, text),) = config_map["data"].items()
        assert json.loads(text) == dashboards[name]
    disabled = render(None, "metrics.dashboards.enabled=false", chart=chart)
    assert not [
        d for d in of_kind(disabled, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]
    ]


def test_alerts_become_a_prometheus_rule_verbatim(chart: Path) -> None:
    (chart / "files").mkdir(exist_ok=True)
    (chart / "files" / "alerts.yaml").write_text(yaml.safe_dump(ALERTS))
    assert of_kind(render(None, chart=chart), "PrometheusRule") == []
    docs = render(
        None,
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.extraLabels.release=prometheus",
        chart=chart,
    )
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["spec"] == ALERTS
    assert rule["metadata"]["labels"]["release"] == "prometheus"

"""A real Prometheus scrapes the running services; every dashboard query and alert expression
is run through its HTTP API against what it scraped."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml

from conftest import StackFactory
from promsupport import publish_gap, tool
from streamer_devstack.processes import Process, StartError
from streamer_devstack.stack import Stack
from support import Result, calls_until_served, collect, free_port, new_id, request, wait_until

CHART = Path(__file__).parents[1] / "deploy" / "helm" / "streamer"
ALERTS = CHART / "files" / "alerts.yaml"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
SCRAPE_SECONDS = 1.0
# Grafana's variables, as the dashboards would have them over the test's few seconds.
VARIABLES = {"$namespace": ".*", "$__rate_interval": "30s", "$__range": "5m"}


class Prometheus(Process):
    """A real Prometheus scraping `targets` every second and evaluating the chart's alerts."""

    def __init__(self, workdir: Path, targets: dict[str, str]) -> None:
        self.port = free_port()
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "500ms",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        super().__init__(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            workdir / "prometheus.log",
        )

    def start(self) -> None:
        """Start and wait until Prometheus says it is ready."""
        self.spawn()
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1):
                    return
            except OSError:
                if not self.alive():
                    break
                time.sleep(0.05)
        raise StartError(f"prometheus did not become ready:\n{self.log.read_text()[-2000:]}")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer (fails the test otherwise)."""
        query = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            answer = json.loads(error.read())
        assert answer["status"] == "success", (params, answer)
        return answer["data"]

    def query(self, expr: str) -> list[Any]:
        """The instant vector `expr` evaluates to now."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def targets_up(self) -> int:
        """How many scrape targets answered their last scrape."""
        return sum(target["health"] == "up" for target in self.api("targets")["activeTargets"])


@pytest.fixture
def prometheus(make_stack: StackFactory, tmp_path: Path) -> Iterator[tuple[Stack, Prometheus]]:
    """A stack (edge limited to two streams, one producer) and a Prometheus scraping it."""
    stack = make_stack(edge={"EDGE_MAX_STREAMS": "2"})
    assert stack.edge is not None
    producer = stack.producers[0]
    server = Prometheus(
        tmp_path / "prometheus",
        {
            "streamer-edge": f"127.0.0.1:{stack.edge.ready['metrics_port']}",
            "streamer-producer": f"127.0.0.1:{producer.ready['metrics_port']}",
        },
    )
    server.start()
    try:
        yield stack, server
    finally:
        producer.signal(signal.SIGCONT)
        stack.edge.signal(signal.SIGCONT)
        server.stop()


def alerts() -> dict[str, str]:
    """Every alerting rule of the chart: name to expression."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, expression) of every panel target, Grafana's variables filled in."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append((path.name, panel["title"], expr))
    return found


def holding(server: Prometheus) -> set[str]:
    """The alerts whose expression returns data now (their condition holds, `for` aside)."""
    return {name for name, expr in alerts().items() if server.query(expr)}


async def healthy_workload(stack: Stack) -> list[Result]:
    """Six streams, two at a time, a call refused as invalid, and one cut short by a gap."""
    results = []
    for _ in range(3):
        results += await asyncio.gather(
            *(
                collect(stack.target, stack.tls.cert, request(new_id(), count=40, interval_ms=5))
                for _ in range(2)
            )
        )
    results.append(await collect(stack.target, stack.tls.cert, request("not valid")))
    gap = new_id()
    await publish_gap(stack, gap)
    lossy = request(gap)
    lossy.job = "no-such-job"
    results.append(await collect(stack.target, stack.tls.cert, lossy))
    return results


async def scrapes(count: int) -> None:
    """Let Prometheus scrape and evaluate `count` more times."""
    await asyncio.sleep(count * SCRAPE_SECONDS + 0.5)


async def test_dashboards_and_alerts_against_a_real_prometheus(
    prometheus: tuple[Stack, Prometheus],
) -> None:
    stack, server = prometheus
    producer = stack.producers[0]
    await wait_until(lambda: server.targets_up() == 2, 15, 0.2)
    rules = [rule for group in server.api("rules")["groups"] for rule in group["rules"]]
    assert sorted(rule["name"] for rule in rules) == sorted(alerts())

    results = await healthy_workload(stack)
    assert [r.code.name for r in results] == ["OK"] * 6 + ["INVALID_ARGUMENT", "DATA_LOSS"]
    await scrapes(3)

    empty = [
        (board, title, expr) for board, title, expr in panel_queries() if not server.query(expr)
    ]
    assert empty == [], "dashboard queries without data"
    # A healthy stack: no jobs waiting, no edge near its limit, fast first chunks. The gap
    # is data loss, and 1 of 8 stream calls failing on the server side is above 5%.
    assert holding(server) == {"StreamerDataLoss", "StreamerStreamErrorRatioHigh"}

    # No producer pulls: the jobs of two waiting calls pile up and fill the edge.
    producer.signal(signal.SIGSTOP)
    await asyncio.sleep(1.5)  # its open pull requests expire, so NATS delivers it nothing
    first = asyncio.ensure_future(
        collect(stack.target, stack.tls.cert, request(new_id(), count=3, interval_ms=1))
    )
    await scrapes(2)
    second = asyncio.ensure_future(
        collect(stack.target, stack.tls.cert, request(new_id(), count=3, interval_ms=1))
    )
    await scrapes(3)
    assert holding(server) >= {
        "StreamerJobsNotConsumed",
        "StreamerJobQueueGrowing",
        "StreamerEdgeNearStreamLimit",
    }

    # The producer comes back: both calls got their first chunk after more than 2.5s.
    producer.signal(signal.SIGCONT)
    for result in await asyncio.gather(first, second):
        result.assert_complete(3)
    await wait_until(lambda: "StreamerTimeToFirstChunkSlow" in holding(server), 10, 0.5)
    # Its event loop ran its timer seconds late, once, over a short history.
    await wait_until(lambda: "StreamerProducerEventLoopBlocked" in holding(server), 10, 0.5)

    # The edge's loop stops for 5s: its timer runs that late too.
    edge = stack.edge
    assert edge is not None
    assert "StreamerEdgeEventLoopLagging" not in holding(server)
    edge.signal(signal.SIGSTOP)
    await asyncio.sleep(5)
    edge.signal(signal.SIGCONT)
    await wait_until(lambda: "StreamerEdgeEventLoopLagging" in holding(server), 10, 0.5)

    # The jobs stream is removed: the services create it again, and say so.
    assert "StreamerJetStreamRecreated" not in holding(server)
    async with await nats.connect(stack.nats.url) as nc:
        await nc.jetstream().delete_stream("STREAMER_JOBS")
    failures = await calls_until_served(stack, 10)
    assert all("a JetStream stream is missing" in details for details in failures), failures
    await wait_until(lambda: "StreamerJetStreamRecreated" in holding(server), 10, 0.5)
    assert all(
        rule["health"] == "ok" for group in server.api("rules")["groups"] for rule in group["rules"]
    )

"""Chart and app agree: the env and args the chart renders start the real processes, which
pass the chart's probes, serve the helm test and drain within the chart's grace period; every
EDGE_*/PRODUCER_* variable the chart sets is one the app reads."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamer_common.settings import SettingsError, load, variables
from streamer_common.topology import JOBS_CONSUMER
from streamer_edge.settings import EdgeSettings
from streamer_producer.settings import ProducerSettings

from .chartlib import (
    CHART_DIR,
    RELEASE,
    VARIANTS,
    Manifest,
    env_of,
    find,
    is_hook,
    pod_spec,
    render_variant,
    workloads,
)
from .localpods import LocalPod, LocalRelease, running

EDGE = f"{RELEASE}-streamer-edge"
PRODUCER = f"{RELEASE}-streamer-producer"
NATS = f"{RELEASE}-streamer-nats"
SETTINGS = {"EDGE": (EDGE, EdgeSettings), "PRODUCER": (PRODUCER, ProducerSettings)}


def app_env(docs: tuple[Manifest, ...], deployment: str) -> dict[str, str]:
    """The container env, with values from Secrets (not rendered for every variant) stubbed."""
    container = pod_spec(find(docs, "Deployment", deployment))["containers"][0]
    return {item["name"]: item.get("value", "from-a-secret") for item in container.get("env", [])}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("prefix", SETTINGS)
def test_every_variable_the_chart_sets_is_a_setting(variant: str, prefix: str) -> None:
    deployment, settings = SETTINGS[prefix]
    env = app_env(render_variant(variant), deployment)
    ours = {name for name in env if not name.startswith("OTEL_")}
    assert ours <= set(variables(settings, prefix)), ours - set(variables(settings, prefix))
    assert all(name.startswith("OTEL_") for name in set(env) - ours)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("prefix", SETTINGS)
def test_the_app_accepts_every_variant_settings(variant: str, prefix: str) -> None:
    deployment, settings = SETTINGS[prefix]
    try:
        load(settings, prefix, app_env(render_variant(variant), deployment))
    except SettingsError as error:
        pytest.fail(f"{deployment} would exit at start-up: {error}")


def chart_defaults(section: dict[str, Any]) -> dict[str, Any]:
    """values.yaml settings by field name (camelCase key -> snake_case field)."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): value for key, value in section.items()}


@pytest.mark.parametrize("prefix", SETTINGS)
def test_values_yaml_states_the_app_defaults(prefix: str) -> None:
    deployment, settings = SETTINGS[prefix]
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    component = values["edge" if prefix == "EDGE" else "producer"]
    stated = chart_defaults({**values["config"], **component["config"]})
    defaults = {f.name: f.default for f in dataclasses.fields(settings)}
    rendered = load(settings, prefix, app_env(render_variant("defaults"), deployment))
    differing = {
        name: (getattr(rendered, name), defaults[name])
        for name in stated
        if name in defaults and getattr(rendered, name) != defaults[name]
    }
    assert differing == {}, "values.yaml and the app disagree on defaults (chart, app)"


@pytest.mark.parametrize("variant", ["defaults", "mtls"])
def test_release_runs_locally(variant: str, tmp_path: Path) -> None:
    release = LocalRelease(render_variant(variant), tmp_path)
    with running(release, [NATS, PRODUCER, EDGE]) as pods:
        run_helm_test(release, tmp_path)
        assert_drains_in_time(pods[PRODUCER])
        assert_drains_in_time(pods[EDGE])


def run_helm_test(release: LocalRelease, root: Path) -> None:
    """The helm test pod's containers, in order, against the local release."""
    (test_pod,) = [doc for doc in workloads(release.docs) if is_hook(doc)]
    pod = LocalPod(release, test_pod)
    spec = pod_spec(test_pod)
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        result = pod.run(container, timeout=60)
        assert result.returncode == 0, f"{container['name']}: {result.stdout}{result.stderr}"
    count = int(next(a for a in spec["containers"][0]["command"] if "count=" in a).split("=")[-1])
    lines = result.stdout.splitlines()
    assert [line.split("]")[0] for line in lines[:-1]] == [
        f"Sequence[{n}" for n in range(1, count + 1)
    ]
    assert lines[-1] == "Stream is over"


def assert_drains_in_time(pod: LocalPod) -> None:
    """SIGTERM (after the preStop sleep, which the kubelet runs first): a clean, timely exit."""
    container = pod.spec["containers"][0]
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    budget = pod.spec["terminationGracePeriodSeconds"] - pre_stop
    ((code, seconds),) = pod.terminate().values()
    assert code == 0, f"{pod.name} exited {code}:\n{pod.log(container)[-3000:]}"
    assert seconds < budget


def test_the_edge_probes_use_the_health_port_the_app_serves(tmp_path: Path) -> None:
    docs = render_variant("defaults")
    container = pod_spec(find(docs, "Deployment", EDGE))["containers"][0]
    health = env_of(container)["EDGE_HEALTH_ADDRESS"]
    assert health.endswith(f":{container['startupProbe']['grpc']['port']}")
    release = LocalRelease(docs, tmp_path)
    with running(release, [NATS, EDGE]) as pods:
        edge = pods[EDGE]
        probe_port = edge.port(container["startupProbe"]["grpc"]["port"])
        grpc_port = edge.port("grpc")
        assert edge.grpc_serving(probe_port, "")
        assert edge.grpc_serving(probe_port, "stream.Streamer")
        assert not edge.grpc_serving(grpc_port, ""), "the TLS port must not answer plaintext"
        pods[NATS].kill()
        assert wait_for(lambda: not edge.probe(container, container["readinessProbe"]), 15)
        assert edge.probe(container, container["livenessProbe"]), "NATS outage restarts the edge"


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("variant", ["keda", "external-nats"])
def test_keda_watches_the_consumer_producers_pull_jobs_from(variant: str) -> None:
    docs = render_variant(variant)
    (trigger,) = find(docs, "ScaledObject", PRODUCER)["spec"]["triggers"]
    producer_env = app_env(docs, PRODUCER)
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["consumer"] == JOBS_CONSUMER
    assert trigger["metadata"]["stream"] == producer_env["PRODUCER_JOBS_STREAM"]

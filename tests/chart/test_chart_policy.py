"""Policy on what every variant renders: hardened, probed, resourced, labelled containers;
selectors, Services and NetworkPolicies that reach the pods they mean to."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .chartlib import (
    VARIANTS,
    Manifest,
    containers,
    env_of,
    is_hook,
    of_kind,
    pod_labels,
    pod_spec,
    render_variant,
    selects,
    values_of,
    workloads,
)

STANDARD_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
    "helm.sh/chart",
}
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}

variants = pytest.mark.parametrize("variant", VARIANTS)


def each_container(variant: str) -> list[tuple[Manifest, dict[str, Any]]]:
    return [(doc, c) for doc in workloads(render_variant(variant)) for c in containers(doc)]


def name_of(doc: Manifest, container: dict[str, Any] | None = None) -> str:
    suffix = f"/{container['name']}" if container else ""
    return f"{doc['kind']}/{doc['metadata']['name']}{suffix}"


@variants
def test_every_container_has_requests_and_a_memory_limit(variant: str) -> None:
    lacking = [
        name_of(doc, c)
        for doc, c in each_container(variant)
        if not {"cpu", "memory"} <= set(c.get("resources", {}).get("requests", {}))
        or "memory" not in c.get("resources", {}).get("limits", {})
    ]
    assert lacking == []


@variants
def test_every_long_running_container_has_three_probes(variant: str) -> None:
    lacking = [
        name_of(doc, c)
        for doc in workloads(render_variant(variant))
        if not is_hook(doc)
        for c in pod_spec(doc)["containers"]
        if not {"startupProbe", "readinessProbe", "livenessProbe"} <= set(c)
    ]
    assert lacking == []


@variants
def test_every_container_is_hardened(variant: str) -> None:
    problems = []
    for doc, c in each_container(variant):
        pod = pod_spec(doc).get("securityContext", {})
        own = c.get("securityContext", {})
        effective = {**pod, **own}
        checks = {
            "runAsNonRoot": effective.get("runAsNonRoot") is True,
            "non-zero runAsUser": effective.get("runAsUser", 0) != 0,
            "readOnlyRootFilesystem": own.get("readOnlyRootFilesystem") is True,
            "allowPrivilegeEscalation false": own.get("allowPrivilegeEscalation") is False,
            "drop ALL": "ALL" in own.get("capabilities", {}).get("drop", []),
            "no added capabilities": not own.get("capabilities", {}).get("add"),
            "seccomp RuntimeDefault": effective.get("seccompProfile", {}).get("type")
            == "RuntimeDefault",
            "not privileged": not own.get("privileged"),
        }
        problems += [f"{name_of(doc, c)}: {check}" for check, ok in checks.items() if not ok]
    assert problems == []


@variants
def test_pods_share_no_host_namespaces_and_mount_no_token(variant: str) -> None:
    problems = [
        f"{name_of(doc)}: {key}"
        for doc in workloads(render_variant(variant))
        for key in ("hostNetwork", "hostPID", "hostIPC")
        if pod_spec(doc).get(key)
    ] + [
        f"{name_of(doc)}: automountServiceAccountToken"
        for doc in workloads(render_variant(variant))
        if pod_spec(doc).get("automountServiceAccountToken") is not False
    ]
    assert problems == []


@variants
def test_images_are_pinned(variant: str) -> None:
    unpinned = [
        f"{name_of(doc, c)}: {c['image']}"
        for doc, c in each_container(variant)
        if "@sha256:" not in c["image"]
        and (":" not in c["image"].rsplit("/", 1)[-1] or c["image"].endswith(":latest"))
    ]
    assert unpinned == []


@variants
def test_objects_carry_the_standard_labels(variant: str) -> None:
    lacking = [
        f"{name_of(doc)}: {sorted(STANDARD_LABELS - set(doc['metadata'].get('labels', {})))}"
        for doc in render_variant(variant)
        if not set(doc["metadata"].get("labels", {})) >= STANDARD_LABELS
    ]
    assert lacking == []


@variants
def test_workload_selectors_match_their_pod_labels(variant: str) -> None:
    mismatched = [
        name_of(doc)
        for doc in workloads(render_variant(variant))
        if doc["kind"] != "Pod"
        if not selects(doc["spec"]["selector"], pod_labels(doc))
    ]
    assert mismatched == []


def selected_workloads(docs: tuple[Manifest, ...], selector: dict[str, Any]) -> list[Manifest]:
    return [
        doc for doc in workloads(docs) if not is_hook(doc) and selects(selector, pod_labels(doc))
    ]


@variants
def test_services_pdbs_and_policies_select_pods(variant: str) -> None:
    docs = render_variant(variant)
    selectors = [
        (name_of(d), {"matchLabels": d["spec"]["selector"]}) for d in of_kind(docs, "Service")
    ]
    selectors += [(name_of(d), d["spec"]["selector"]) for d in of_kind(docs, "PodDisruptionBudget")]
    selectors += [(name_of(d), d["spec"]["podSelector"]) for d in of_kind(docs, "NetworkPolicy")]
    empty = [name for name, selector in selectors if not selected_workloads(docs, selector)]
    assert empty == []


def declared_ports(doc: Manifest) -> set[int | str]:
    ports: set[int | str] = set()
    for container in pod_spec(doc)["containers"]:
        for port in container.get("ports", []):
            ports |= {port["containerPort"], port.get("name", port["containerPort"])}
    return ports


@variants
def test_every_service_port_targets_a_declared_container_port(variant: str) -> None:
    docs = render_variant(variant)
    problems = []
    for service in of_kind(docs, "Service"):
        for pod in selected_workloads(docs, {"matchLabels": service["spec"]["selector"]}):
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if target not in declared_ports(pod):
                    problems.append(
                        f"{name_of(service)} port {port['name']} -> {target} on {name_of(pod)}"
                    )
    assert problems == []


@variants
def test_every_pod_is_behind_a_network_policy(variant: str) -> None:
    docs = render_variant(variant)
    policies = of_kind(docs, "NetworkPolicy")
    unprotected = [
        name_of(doc)
        for doc in workloads(docs)
        if not is_hook(doc)
        if not any(selects(p["spec"]["podSelector"], pod_labels(doc)) for p in policies)
    ]
    assert unprotected == []


@variants
def test_network_policies_name_declared_ports(variant: str) -> None:
    docs = render_variant(variant)
    problems = []
    for policy in of_kind(docs, "NetworkPolicy"):
        for pod in selected_workloads(docs, policy["spec"]["podSelector"]):
            for rule in policy["spec"].get("ingress", []):
                problems += [
                    f"{name_of(policy)}: port {port['port']} not on {name_of(pod)}"
                    for port in rule.get("ports", [])
                    if port["port"] not in declared_ports(pod)
                ]
    assert problems == []


def seconds(duration: str) -> float:
    match = DURATION.match(duration)
    assert match, f"{duration!r} is not a duration"
    return float(match.group(1)) * UNIT_SECONDS[match.group(2)]


def pre_stop_seconds(container: dict[str, Any]) -> float:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return float(command[1]) if command[:1] == ["sleep"] else 0.0


@variants
def test_pods_get_longer_than_the_app_needs_to_drain(variant: str) -> None:
    problems = []
    for doc in workloads(render_variant(variant)):
        for container in pod_spec(doc)["containers"]:
            graces = [
                seconds(v) for k, v in env_of(container).items() if k.endswith("_SHUTDOWN_GRACE")
            ]
            if not graces:
                continue
            needed = max(graces) + pre_stop_seconds(container)
            granted = pod_spec(doc).get("terminationGracePeriodSeconds", 30)
            if not pre_stop_seconds(container) or granted <= needed:
                problems.append(f"{name_of(doc, container)}: {granted}s for {needed}s of drain")
    assert problems == []


@variants
def test_the_edge_health_port_is_for_probes_only(variant: str) -> None:
    docs = render_variant(variant)
    service_targets = {
        port.get("targetPort")
        for service in of_kind(docs, "Service")
        for port in service["spec"]["ports"]
    }
    edge = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-edge"))
    container = pod_spec(edge)["containers"][0]
    health = next(p for p in container["ports"] if p["name"] == "health")
    assert "health" not in service_targets
    assert health["containerPort"] not in service_targets
    assert container["startupProbe"]["grpc"]["port"] == health["containerPort"]
    assert container["readinessProbe"]["grpc"]["port"] == health["containerPort"]
    assert env_of(container)["EDGE_HEALTH_ADDRESS"].endswith(f":{health['containerPort']}")


@variants
def test_scalers_and_monitors_point_at_rendered_objects(variant: str) -> None:
    docs = render_variant(variant)
    deployments = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}
    targets = [
        d["spec"]["scaleTargetRef"]["name"] for d in of_kind(docs, "HorizontalPodAutoscaler")
    ]
    targets += [d["spec"]["scaleTargetRef"]["name"] for d in of_kind(docs, "ScaledObject")]
    assert set(targets) <= deployments
    for monitor in of_kind(docs, "ServiceMonitor"):
        services = [
            s
            for s in of_kind(docs, "Service")
            if selects(monitor["spec"]["selector"], s["metadata"]["labels"])
        ]
        assert services, f"{name_of(monitor)} selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            assert all(
                endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in services
            )


@variants
def test_volumes_and_config_references_resolve(variant: str) -> None:
    docs = render_variant(variant)
    config_maps = {d["metadata"]["name"] for d in of_kind(docs, "ConfigMap")}
    problems = []
    for doc in workloads(docs):
        volumes = {v["name"]: v for v in pod_spec(doc).get("volumes", [])}
        volumes |= {t["metadata"]["name"]: t for t in doc["spec"].get("volumeClaimTemplates", [])}
        for container in containers(doc):
            problems += [
                f"{name_of(doc, container)}: volume {mount['name']}"
                for mount in container.get("volumeMounts", [])
                if mount["name"] not in volumes
            ]
        problems += [
            f"{name_of(doc)}: ConfigMap {v['configMap']['name']}"
            for v in volumes.values()
            if "configMap" in v and v["configMap"]["name"] not in config_maps
        ]
    assert problems == []


def secrets_named_in(values: Any) -> set[str]:
    """Secret names the values give (keys such as existingSecret, clientCASecret)."""
    if isinstance(values, dict):
        return {
            name
            for key, value in values.items()
            for name in (
                [value]
                if key.endswith("Secret") and isinstance(value, str) and value
                else secrets_named_in(value)
            )
        }
    return set()


@variants
def test_pods_read_only_secrets_that_exist(variant: str) -> None:
    docs = render_variant(variant)
    secrets = {d["metadata"]["name"]: set(d.get("data", {})) for d in of_kind(docs, "Secret")}
    certificates = {d["spec"]["secretName"] for d in of_kind(docs, "Certificate")}
    problems = []
    for doc in workloads(docs):
        wanted = [
            (v["secret"]["secretName"], item["key"])
            for v in pod_spec(doc).get("volumes", [])
            if "secret" in v
            for item in v["secret"].get("items", [])
        ] + [
            (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for c in containers(doc)
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        ]
        problems += [
            f"{name_of(doc)}: {name}[{key}]"
            for name, key in wanted
            if name in secrets and key not in secrets[name]
        ]
        problems += [
            f"{name_of(doc)}: secret {name} neither rendered nor issued nor set in values"
            for name, _ in wanted
            if name not in set(secrets) | certificates | secrets_named_in(values_of(variant))
        ]
    assert problems == []


def ingress_peers(
    docs: tuple[Manifest, ...], pod: Manifest, port: str
) -> list[dict[str, Any]] | None:
    """Peers allowed to reach a named port of a pod (None: anyone)."""
    peers: list[dict[str, Any]] = []
    for policy in of_kind(docs, "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], pod_labels(pod)):
            continue
        for rule in policy["spec"].get("ingress", []):
            if port in [p["port"] for p in rule.get("ports", [])]:
                if "from" not in rule:
                    return None
                peers += rule["from"]
    return peers


@pytest.mark.parametrize("variant", ["defaults", "clustered-nats", "keda"])
def test_nats_accepts_clients_from_this_release_edge_and_producers_only(variant: str) -> None:
    docs = render_variant(variant)
    nats = next(d for d in of_kind(docs, "StatefulSet") if d["metadata"]["name"].endswith("-nats"))
    peers = ingress_peers(docs, nats, "client")
    assert peers is not None
    assert all(set(peer) == {"podSelector"} for peer in peers)
    allowed = {
        name_of(doc)
        for doc in workloads(docs)
        if any(selects(peer["podSelector"], pod_labels(doc)) for peer in peers)
    }
    assert allowed == {"Deployment/demo-streamer-edge", "Deployment/demo-streamer-producer"}
    stranger = {**pod_labels(find_edge(docs)), "app.kubernetes.io/instance": "other"}
    assert not any(selects(peer["podSelector"], stranger) for peer in peers)


def find_edge(docs: tuple[Manifest, ...]) -> Manifest:
    return next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-edge"))


@variants
def test_clients_reach_the_edge_grpc_port_and_the_helm_test_always_can(variant: str) -> None:
    docs = render_variant(variant)
    peers = ingress_peers(docs, find_edge(docs), "grpc")
    (test_pod,) = [doc for doc in workloads(docs) if is_hook(doc)]
    if peers is not None:
        assert any(
            "podSelector" in peer and selects(peer["podSelector"], pod_labels(test_pod))
            for peer in peers
        )
    assert ingress_peers(docs, find_edge(docs), "health") == []

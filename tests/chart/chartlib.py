"""Render the Helm chart with the real helm binary and find things in what it renders."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "streamer"
HELM = REPO_ROOT / ".local" / "bin" / "helm"
INSTALL_HELM = REPO_ROOT / "deploy" / "tools" / "install-helm.sh"
RELEASE = "demo"
NAMESPACE = "streaming"

Manifest = dict[str, Any]

# Every ci/*-values.yaml, by the name before -values.yaml: one variant of the chart each.
VARIANTS = {
    path.name.removesuffix("-values.yaml"): path
    for path in sorted((CHART_DIR / "ci").glob("*-values.yaml"))
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}


def ensure_helm() -> Path:
    """The helm binary in .local/bin, installed by deploy/tools/install-helm.sh if missing."""
    if not HELM.exists():
        subprocess.run(["bash", str(INSTALL_HELM)], check=True, timeout=300)
    return HELM


def helm(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm; with check, fail with its stderr when it fails."""
    result = subprocess.run(
        [str(ensure_helm()), *map(str, args)], capture_output=True, text=True, timeout=60
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def template_args(values: Path | None, sets: tuple[str, ...], chart: Path) -> list[str | Path]:
    """Arguments of `helm template` for this chart, values file and --set pairs."""
    args: list[str | Path] = ["template", RELEASE, chart, "--namespace", NAMESPACE]
    if values is not None:
        args += ["--values", values]
    for pair in sets:
        args += ["--set", pair]
    return args


def render(values: Path | None = None, *sets: str, chart: Path = CHART_DIR) -> list[Manifest]:
    """Every object `helm template` renders (test hooks included), parsed."""
    output = helm(*template_args(values, sets, chart)).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@functools.cache
def render_variant(name: str) -> tuple[Manifest, ...]:
    """The objects one ci/*-values.yaml renders; cached, so treat them as read-only."""
    return tuple(render(VARIANTS[name]))


def values_of(name: str) -> dict[str, Any]:
    """The chart's values.yaml overlaid with a variant's values (maps merged deeply)."""
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    overrides = yaml.safe_load(VARIANTS[name].read_text()) or {}
    return merge(defaults, overrides)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps deeply, everything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def find(docs: tuple[Manifest, ...] | list[Manifest], kind: str, name: str) -> Manifest:
    """The one object of this kind and name."""
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(docs: tuple[Manifest, ...] | list[Manifest], kind: str) -> list[Manifest]:
    """Every object of this kind."""
    return [doc for doc in docs if doc["kind"] == kind]


def is_hook(doc: Manifest) -> bool:
    """Whether Helm runs this object as a hook (e.g. the `helm test` pod)."""
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


def pod_spec(doc: Manifest) -> dict[str, Any]:
    """The pod spec of a workload or a bare Pod."""
    if doc["kind"] == "Pod":
        return doc["spec"]
    return doc["spec"]["template"]["spec"]


def pod_labels(doc: Manifest) -> dict[str, str]:
    """The labels of the pods a workload runs."""
    if doc["kind"] == "Pod":
        return doc["metadata"].get("labels") or {}
    return doc["spec"]["template"]["metadata"].get("labels") or {}


def workloads(docs: tuple[Manifest, ...] | list[Manifest]) -> list[Manifest]:
    """Everything that runs pods."""
    return [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]


def containers(doc: Manifest) -> Iterator[dict[str, Any]]:
    """Init containers, then containers, of a workload."""
    spec = pod_spec(doc)
    yield from spec.get("initContainers") or []
    yield from spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """A container's plain env values (valueFrom entries map to "")."""
    return {item["name"]: item.get("value", "") for item in container.get("env") or []}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) matches these labels."""
    match_labels = selector.get("matchLabels") or {}
    if any(labels.get(key) != value for key, value in match_labels.items()):
        return False
    return all(_holds(expression, labels) for expression in selector.get("matchExpressions") or [])


def _holds(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    key, operator = expression["key"], expression["operator"]
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    if operator == "In":
        return labels.get(key) in expression["values"]
    return labels.get(key) not in expression["values"]

"""Every rendered object validates against the Kubernetes API schemas (strict: no unknown
fields) of the oldest release the chart supports and the newest one bundled; custom resources
against their CRDs' required fields."""

from __future__ import annotations

import copy
import functools
import re

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from .chartlib import CHART_DIR, VARIANTS, Manifest, find, render_variant
from .crd_schemas import NATS_JETSTREAM_METADATA, SCHEMAS

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate",
    reason="dev dependency kubernetes-validate is missing (it bundles the Kubernetes schemas)",
)


def oldest_supported() -> str:
    """The minimum of Chart.yaml's kubeVersion (">=1.29.0-0" -> "1.29.0")."""
    constraint = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["kubeVersion"]
    match = re.match(r"^>=\s*(\d+\.\d+)", constraint)
    assert match, f"kubeVersion {constraint!r} has no lower bound"
    return f"{match.group(1)}.0"


KUBERNETES_VERSIONS = [oldest_supported(), kubernetes_validate.utils.latest_version()]


@functools.cache
def kubernetes_validator(version: str, api_version: str, kind: str) -> jsonschema.Validator:
    """What kubernetes_validate.validate(strict=True) checks, with each schema loaded once."""
    directory = f"kubernetes-json-schema/v{version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    load = kubernetes_validate.utils.schema_contents
    try:
        schema = load(f"{directory}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        raise kubernetes_validate.SchemaNotFoundError(kind, version, api_version) from None
    definitions = load(f"{directory}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def kubernetes_errors(doc: Manifest) -> list[str]:
    """Schema errors of one built-in object, for each Kubernetes version checked."""
    return [
        f"{doc['kind']}/{doc['metadata']['name']} on {version}: "
        f"{'.'.join(map(str, error.path))}: {error.message}"
        for version in KUBERNETES_VERSIONS
        for error in kubernetes_validator(version, doc["apiVersion"], doc["kind"]).iter_errors(doc)
    ]


def custom_resource_errors(doc: Manifest) -> list[str]:
    """Errors of one custom resource against the CRD fields the chart relies on."""
    validator = jsonschema.Draft202012Validator(SCHEMAS[(doc["apiVersion"], doc["kind"])])
    errors = [
        f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(doc)
    ]
    for trigger in doc["spec"].get("triggers", []) if doc["kind"] == "ScaledObject" else []:
        if trigger["type"] == "nats-jetstream":
            missing = NATS_JETSTREAM_METADATA - set(trigger["metadata"])
            errors += (
                [f"ScaledObject nats-jetstream trigger lacks {sorted(missing)}"] if missing else []
            )
    return errors


def errors_of(doc: Manifest) -> list[str]:
    if (doc["apiVersion"], doc["kind"]) in SCHEMAS:
        return custom_resource_errors(doc)
    try:
        return kubernetes_errors(doc)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{doc['apiVersion']} {doc['kind']} is neither a Kubernetes kind nor a known CRD"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_matches_its_schema(variant: str) -> None:
    errors = [error for doc in render_variant(variant) for error in errors_of(doc)]
    assert errors == []


def test_custom_resources_are_rendered_and_checked() -> None:
    kinds = {
        doc["kind"]
        for variant in VARIANTS
        for doc in render_variant(variant)
        if (doc["apiVersion"], doc["kind"]) in SCHEMAS
    }
    assert kinds == {"Certificate", "ServiceMonitor", "ScaledObject"} | (
        {"PrometheusRule"} if (CHART_DIR / "files" / "alerts.yaml").exists() else set()
    )


def test_the_checks_catch_a_broken_object() -> None:
    docs = render_variant("defaults")
    deployment = copy.deepcopy(find(docs, "Deployment", "demo-streamer-edge"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    assert any("readinessProbes" in error for error in errors_of(deployment))
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    deployment["spec"]["replicas"] = "two"
    assert any("replicas" in error for error in errors_of(deployment))
    scaled = copy.deepcopy(find(render_variant("keda"), "ScaledObject", "demo-streamer-producer"))
    del scaled["spec"]["scaleTargetRef"]
    assert any("scaleTargetRef" in error for error in errors_of(scaled))

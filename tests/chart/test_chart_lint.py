"""`helm lint --strict` and the values schema: every variant passes, mistakes fail clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chartlib import CHART_DIR, VARIANTS, helm, render, template_args


@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_strict_passes(variant: str) -> None:
    result = helm("lint", "--strict", CHART_DIR, "--values", VARIANTS[variant], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_every_variant_of_the_issue_is_covered() -> None:
    assert {
        "defaults",
        "external-nats",
        "cert-manager",
        "mtls",
        "clustered-nats",
        "keda",
    } <= set(VARIANTS)


def failure(*sets: str) -> str:
    """helm template's error output for these --set pairs; fails if it renders."""
    result = helm(*template_args(None, sets, CHART_DIR), check=False)
    assert result.returncode != 0, f"{sets} rendered, expected an error"
    return result.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("edge.replicaCout=3",), "additional properties 'replicaCout' not allowed"),
        (("image.tag=latest",), "/image/tag"),
        (("config.logFormat=yaml",), "/config/logFormat"),
        (("securityContext.readOnlyRootFilesystem=false",), "readOnlyRootFilesystem"),
        (("config.retention=an hour",), "/config/retention"),
        (("config.dataMaxBytes=0",), "/config/dataMaxBytes"),
        (("config.jobsMaxBytes=100",), "/config/jobsMaxBytes"),
        (("tls.mode=existingSecret",), "tls.existingSecret is required"),
        (("tls.mode=certManager",), "tls.certManager.issuerRef.name is required"),
        (("nats.enabled=false",), "nats.external.urls is required"),
        (("otel.enabled=true",), "otel.endpoint is required"),
        (("producer.keda.enabled=true", "producer.autoscaling.enabled=true"), "enable one"),
        (
            ("tls.mode=existingSecret", "tls.existingSecret=x", "tls.mtls.enabled=true"),
            "tls.mtls.clientSecret is required",
        ),
        (
            (
                "nats.enabled=false",
                "nats.external.urls={nats://n:4222}",
                "producer.keda.enabled=true",
            ),
            "producer.keda.natsMonitoringEndpoint is required",
        ),
        (
            ("edge.resources.limits.memory=2560Mi",),
            "edge.config.maxStreams (1000) x (streamBufferBytes 2097152 + 512 KiB in gRPC)"
            " + 128 MiB = 2628 Mi",
        ),
        (("edge.resources.limits.memory=lots",), 'cannot read the memory quantity "lots"'),
        (
            ("edge.autoscaling.enabled=true", "edge.autoscaling.maxReplicas=11"),
            "config.dataMaxConsumers (10000) is less than the streams the edges may hold open:"
            " 11 edges x edge.config.maxStreams (1000) = 11000",
        ),
        (
            ("edge.replicaCount=3", "config.dataMaxConsumers=2999"),
            "3 edges x edge.config.maxStreams (1000) = 3000",
        ),
    ],
)
def test_mistakes_fail_with_a_message_naming_the_value(sets: tuple[str, ...], message: str) -> None:
    assert message in failure(*sets)


@pytest.mark.parametrize(("limit", "streams"), [("512Mi", 153), ("0.5Gi", 153), ("3G", 1093)])
def test_the_edge_memory_limit_may_hold_exactly_max_streams_slow_streams(
    limit: str, streams: int
) -> None:
    # 153 x 2.5 MiB + 128 MiB = 510.5 MiB, one stream more 513; 3G is 2861 MiB.
    sets = (f"edge.resources.limits.memory={limit}", f"edge.config.maxStreams={streams}")
    assert any(m["kind"] == "Deployment" for m in render(None, *sets))
    assert "Raise the limit" in failure(sets[0], f"edge.config.maxStreams={streams + 1}")


def leaf_paths(values: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every value, stopping at free-form maps and lists."""
    if not isinstance(values, dict) or not values:
        return {prefix}
    return {path for key, value in values.items() for path in leaf_paths(value, f"{prefix}.{key}")}


def schema_paths(schema: dict[str, Any], prefix: str = "", required_only: bool = False) -> set[str]:
    """Dotted paths of declared (or required) properties, down to free-form objects."""
    properties = schema.get("properties")
    if not properties:
        return {prefix}
    required = set(schema.get("required", [])) if required_only else set(properties)
    return {
        path
        for key, sub in properties.items()
        if key in required
        for path in schema_paths(sub, f"{prefix}.{key}", required_only)
    }


def test_schema_and_values_declare_the_same_settings() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    declared = schema_paths(schema)
    undeclared = {
        path
        for path in leaf_paths(values)
        if not any(path == d or path.startswith(d + ".") for d in declared)
    }
    assert not undeclared, f"values.yaml keys missing from values.schema.json: {undeclared}"
    without_default = {
        path
        for path in schema_paths(schema, required_only=True)
        if not any(p == path or p.startswith(path + ".") for p in leaf_paths(values))
    }
    assert not without_default, f"schema keys with no default in values.yaml: {without_default}"


def test_schema_closes_every_object() -> None:
    def open_objects(schema: dict[str, Any], path: str) -> list[str]:
        found = []
        if "properties" in schema and schema.get("additionalProperties") is not False:
            found.append(path)
        for key, sub in (schema.get("properties") or {}).items():
            found += open_objects(sub, f"{path}.{key}")
        return found

    schema = json.loads(Path(CHART_DIR / "values.schema.json").read_text())
    assert open_objects(schema, "") == []

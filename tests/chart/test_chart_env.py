"""How values become the services' environment: formats the app parses, and the settings
both services must agree on set identically."""

from __future__ import annotations

import re

import pytest

from .chartlib import RELEASE, VARIANTS, Manifest, env_of, find, pod_spec, render, render_variant

EDGE = f"{RELEASE}-streamer-edge"
PRODUCER = f"{RELEASE}-streamer-producer"
SHARED = (
    "NATS_URL",
    "NATS_USER",
    "DATA_STREAM",
    "JOBS_STREAM",
    "RETENTION",
    "DUPLICATE_WINDOW",
    "STREAM_REPLICAS",
    "MAX_MESSAGE_BYTES",
    "DATA_MAX_CONSUMERS",
    "DATA_MAX_BYTES",
    "JOBS_MAX_BYTES",
)


def env(docs: tuple[Manifest, ...] | list[Manifest], deployment: str) -> dict[str, str]:
    return env_of(pod_spec(find(docs, "Deployment", deployment))["containers"][0])


@pytest.mark.parametrize("variant", VARIANTS)
def test_both_services_get_the_same_shared_settings(variant: str) -> None:
    docs = render_variant(variant)
    edge, producer = env(docs, EDGE), env(docs, PRODUCER)
    for name in SHARED:
        assert edge.get(f"EDGE_{name}") == producer.get(f"PRODUCER_{name}"), name
    assert edge["EDGE_NATS_URL"]


@pytest.mark.parametrize(
    ("variant", "replicas"),
    [("defaults", "1"), ("clustered-nats", "3"), ("external-nats", "3")],
)
def test_stream_replicas_follow_the_nats_cluster(variant: str, replicas: str) -> None:
    assert env(render_variant(variant), EDGE)["EDGE_STREAM_REPLICAS"] == replicas


def test_numbers_render_whole_and_lists_comma_separated() -> None:
    docs = render(
        None,
        "edge.config.maxStreams=1000000",
        "config.dataMaxConsumers=2000000",
        "edge.resources.limits.memory=3Ti",
        "config.maxMessageBytes=8000000",
        "producer.handlerModules={acme.a,acme.b}",
    )
    edge, producer = env(docs, EDGE), env(docs, PRODUCER)
    assert edge["EDGE_MAX_STREAMS"] == "1000000"
    assert edge["EDGE_DATA_MAX_CONSUMERS"] == producer["PRODUCER_DATA_MAX_CONSUMERS"] == "2000000"
    assert edge["EDGE_MAX_MESSAGE_BYTES"] == "8000000"
    assert edge["EDGE_STREAM_BUFFER_BYTES"] == "2097152"
    assert producer["PRODUCER_RETRY_BACKOFF"] == "1s,2s,5s,10s"
    assert producer["PRODUCER_HANDLER_MODULES"] == "acme.a,acme.b"
    nats_conf = find(docs, "ConfigMap", f"{RELEASE}-streamer-nats-config")["data"]["nats.conf"]
    max_payload = re.search(r"^max_payload: (\d+)$", nats_conf, re.M)
    assert max_payload
    assert int(max_payload[1]) > 8000000


def test_external_nats_credentials_reach_both_services() -> None:
    docs = render_variant("external-nats-creds")
    for deployment, prefix in ((EDGE, "EDGE"), (PRODUCER, "PRODUCER")):
        spec = pod_spec(find(docs, "Deployment", deployment))
        path = env_of(spec["containers"][0])[f"{prefix}_NATS_CREDS_FILE"]
        mount = next(
            m for m in spec["containers"][0]["volumeMounts"] if path.startswith(m["mountPath"])
        )
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "streamer-nats-creds"
        assert path == f"{mount['mountPath']}/{volume['secret']['items'][0]['path']}"
    assert not [d for d in docs if d["kind"] == "StatefulSet"]


def test_external_nats_tls_files_reach_both_services() -> None:
    docs = render_variant("external-nats")
    expected = {
        "NATS_TLS_CA_FILE": ("nats-ca", "ca.crt"),
        "NATS_TLS_CERT_FILE": ("streamer-nats-tls", "tls.crt"),
        "NATS_TLS_KEY_FILE": ("streamer-nats-tls", "tls.key"),
    }
    for deployment, prefix in ((EDGE, "EDGE"), (PRODUCER, "PRODUCER")):
        spec = pod_spec(find(docs, "Deployment", deployment))
        env = env_of(spec["containers"][0])
        for name, (secret, key) in expected.items():
            path = env[f"{prefix}_{name}"]
            mount = next(
                m for m in spec["containers"][0]["volumeMounts"] if path.startswith(m["mountPath"])
            )
            assert mount["readOnly"]
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            assert volume["secret"]["secretName"] == secret
            assert {"key": key, "path": key} in volume["secret"]["items"]
            assert path == f"{mount['mountPath']}/{key}"


def test_tls_handshake_first_reaches_both_services_only_when_asked() -> None:
    asked = render(VARIANTS["external-nats"], "nats.external.tlsHandshakeFirst=true")
    for docs, expected in ((asked, "true"), (render_variant("external-nats"), None)):
        for deployment, prefix in ((EDGE, "EDGE"), (PRODUCER, "PRODUCER")):
            env = env_of(pod_spec(find(docs, "Deployment", deployment))["containers"][0])
            assert env.get(f"{prefix}_NATS_TLS_HANDSHAKE_FIRST") == expected


def test_otel_settings_when_enabled_and_sdk_disabled_otherwise() -> None:
    traced = env(render_variant("observability"), PRODUCER)
    assert traced["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability.svc:4317"
    assert traced["OTEL_SERVICE_NAME"] == "streamer-producer"
    assert "deployment.environment=staging" in traced["OTEL_RESOURCE_ATTRIBUTES"].split(",")
    assert "OTEL_SDK_DISABLED" not in traced
    assert env(render_variant("defaults"), EDGE)["OTEL_SDK_DISABLED"] == "true"

"""NOTES.txt tells users commands that work: names this release renders, the proto's method,
flags the bundled client accepts."""

from __future__ import annotations

import functools
import json
import re
import shlex

import pytest

from streamer_client.__main__ import parse_args as parse_client_args

from .chartlib import CHART_DIR, NAMESPACE, RELEASE, REPO_ROOT, VARIANTS, find, helm, render_variant

PROTO = (REPO_ROOT / "proto" / "stream.proto").read_text()


@functools.cache
def notes(variant: str) -> str:
    """The NOTES `helm install` prints for this variant."""
    output = helm(
        "install",
        RELEASE,
        CHART_DIR,
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        "--values",
        VARIANTS[variant],
    ).stdout
    return output.split("NOTES:\n", 1)[1]


def commands(text: str, program: str) -> list[list[str]]:
    """Each `program` command in the notes, continuation lines joined, split like a shell."""
    joined = text.replace("\\\n", " ")
    return [
        shlex.split(line.strip())
        for line in joined.splitlines()
        if line.strip().startswith(program)
    ]


def proto_method() -> str:
    package = re.search(r"^package (\w+);", PROTO, re.M)
    service = re.search(r"^service (\w+) \{", PROTO, re.M)
    method = re.search(r"rpc (\w+)\(Request\) returns \(stream Data\)", PROTO)
    assert package
    assert service
    assert method
    return f"{package[1]}.{service[1]}/{method[1]}"


def request_fields() -> set[str]:
    body = re.search(r"message Request \{(.*?)\n\}", PROTO, re.S)
    assert body
    return set(re.findall(r"^\s*(?:map<\w+, \w+>|\w+) (\w+) = \d+;", body[1], re.M))


@pytest.mark.parametrize("variant", ["defaults", "mtls"])
def test_port_forward_targets_the_edge_service(variant: str) -> None:
    ((*_, service, ports),) = commands(notes(variant), "kubectl --namespace streaming port-forward")
    docs = render_variant(variant)
    edge = find(docs, "Service", service.removeprefix("svc/"))
    local, remote = ports.split(":")
    assert local == "50051"
    assert int(remote) in {p["port"] for p in edge["spec"]["ports"] if p["name"] == "grpc"}


@pytest.mark.parametrize("variant", ["defaults", "mtls"])
def test_secrets_the_notes_read_hold_those_keys(variant: str) -> None:
    docs = render_variant(variant)
    reads = commands(notes(variant), "kubectl --namespace streaming get secret")
    assert len(reads) == (3 if variant == "mtls" else 1)
    for command in reads:
        secret = find(docs, "Secret", command[5])
        key = re.fullmatch(r"jsonpath=\{\.data\.(.+)\}", command[7])
        assert key
        assert key[1].replace("\\.", ".") in secret["data"]


@pytest.mark.parametrize("variant", ["defaults", "mtls"])
def test_grpcurl_calls_the_proto_method_with_a_valid_request(variant: str) -> None:
    calls = commands(notes(variant), "grpcurl")
    assert len(calls) == 2
    verified, insecure = calls
    assert verified[verified.index("-cacert") + 1] == "streamer-ca.crt"
    assert verified[verified.index("-authority") + 1] == f"{RELEASE}-streamer-edge"
    assert "-insecure" in insecure
    for call in calls:
        assert call[-2:] == ["localhost:50051", proto_method()]
        assert set(json.loads(call[call.index("-d") + 1])) <= request_fields()
        assert ("-cert" in call and "-key" in call) == (variant == "mtls")


@pytest.mark.parametrize("variant", ["defaults", "mtls"])
def test_the_bundled_client_accepts_the_notes_flags(variant: str) -> None:
    (command,) = commands(notes(variant), "uv run streamer-client")
    args = parse_client_args(command[command.index("streamer-client") + 1 :])
    assert (args.target, args.ca_file, args.authority) == (
        "localhost:50051",
        "streamer-ca.crt",
        f"{RELEASE}-streamer-edge",
    )
    assert bool(args.cert_file and args.key_file) == (variant == "mtls")

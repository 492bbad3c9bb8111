"""The certificates the chart generates (tls.mode=selfSigned) or asks cert-manager for."""

from __future__ import annotations

import base64
import ipaddress

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from .chartlib import NAMESPACE, RELEASE, Manifest, find, render_variant

EDGE = f"{RELEASE}-streamer-edge"
EDGE_NAMES = {
    EDGE,
    f"{EDGE}.{NAMESPACE}",
    f"{EDGE}.{NAMESPACE}.svc",
    f"{EDGE}.{NAMESPACE}.svc.cluster.local",
    "localhost",
}


def certificate(secret: Manifest, key: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))


def extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType:
    return cert.extensions.get_extension_for_class(kind).value


def test_server_certificate_is_signed_by_the_ca_for_the_edge_names() -> None:
    docs = render_variant("defaults")
    server = find(docs, "Secret", f"{RELEASE}-streamer-tls")
    ca = certificate(server, "ca.crt")
    cert = certificate(server, "tls.crt")
    cert.verify_directly_issued_by(ca)
    assert certificate(find(docs, "Secret", f"{RELEASE}-streamer-ca"), "tls.crt") == ca
    names = extension(cert, x509.SubjectAlternativeName)
    assert set(names.get_values_for_type(x509.DNSName)) == EDGE_NAMES
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert ExtendedKeyUsageOID.SERVER_AUTH in extension(cert, x509.ExtendedKeyUsage)
    assert set(server["data"]) == {"tls.crt", "tls.key", "ca.crt"}


def test_mtls_client_certificate_is_signed_by_the_ca_the_edge_trusts() -> None:
    docs = render_variant("mtls")
    server = find(docs, "Secret", f"{RELEASE}-streamer-tls")
    client = find(docs, "Secret", f"{RELEASE}-streamer-client-tls")
    certificate(client, "tls.crt").verify_directly_issued_by(certificate(server, "ca.crt"))
    usages = extension(certificate(client, "tls.crt"), x509.ExtendedKeyUsage)
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
    edge = find(docs, "Deployment", EDGE)
    env = {
        e["name"]: e.get("value") for e in edge["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["EDGE_TLS_CLIENT_CA_FILE"] == "/etc/streamer/client-ca/ca.crt"


def test_cert_manager_certificates_cover_the_edge_names_and_extra_names() -> None:
    docs = render_variant("cert-manager")
    server = find(docs, "Certificate", f"{RELEASE}-streamer-tls")
    assert set(server["spec"]["dnsNames"]) == EDGE_NAMES | {"streamer.example.com"}
    assert server["spec"]["issuerRef"] == {
        "name": "streamer-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    client = find(docs, "Certificate", f"{RELEASE}-streamer-client-tls")
    assert client["spec"]["usages"] == ["client auth", "digital signature"]
    assert not [d for d in docs if d["kind"] == "Secret" and "tls" in d["metadata"]["name"]]


def test_existing_secrets_are_used_as_named() -> None:
    docs = render_variant("existing-secret")
    volumes = {
        v["name"]: v["secret"]["secretName"]
        for v in find(docs, "Deployment", EDGE)["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    }
    assert volumes == {"tls": "streamer-edge-tls", "client-ca": "streamer-client-ca"}
    test_pod = find(docs, "Pod", f"{RELEASE}-streamer-test-stream")
    test_volumes = {
        v["name"]: v.get("secret", {}).get("secretName") for v in test_pod["spec"]["volumes"]
    }
    assert test_volumes["client"] == "streamer-test-client-tls"
    assert test_volumes["tls"] == "streamer-edge-tls"
    generated = [
        d for d in docs if d["kind"] in ("Secret", "Certificate") and "tls" in d["metadata"]["name"]
    ]
    assert generated == []

"""Run the pods a chart renders as local processes, as a kubelet would run them.

Volumes become directories holding the rendered Secrets and ConfigMaps; env is resolved
(secretKeyRef from rendered Secrets, fieldRef metadata.name); every declared container port
gets a free local port, and `0.0.0.0:<port>` addresses and `<service>...:<port>` references in
env, args and config files are rewritten to 127.0.0.1 and those ports. Images map to local
executables: ours to this environment's console scripts, NATS to the nats-server wheel.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamer_devstack.processes import nats_server_binary

from .chartlib import (
    NAMESPACE,
    Manifest,
    is_hook,
    of_kind,
    pod_labels,
    pod_spec,
    selects,
    workloads,
)

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def executable(image: str, command: list[str]) -> list[str]:
    """The local program for a container's image and command."""
    if image.split("/")[-1].startswith("nats:"):
        return [nats_server_binary(), *command[1:]]
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    script = Path(sys.executable).parent / command[0]
    assert script.exists(), f"the image's command {command[0]} is not a console script here"
    return [str(script), *command[1:]]


class LocalRelease:
    """The rendered objects of one release, with local ports for every container port."""

    def __init__(self, docs: list[Manifest] | tuple[Manifest, ...], root: Path) -> None:
        self.docs = list(docs)
        self.root = root
        self.ports = {
            (doc["metadata"]["name"], port["containerPort"]): free_port()
            for doc in workloads(self.docs)
            for container in pod_spec(doc)["containers"]
            for port in container.get("ports", [])
        }

    def secret(self, name: str) -> dict[str, bytes]:
        (secret,) = [s for s in of_kind(self.docs, "Secret") if s["metadata"]["name"] == name]
        return {key: base64.b64decode(value) for key, value in secret["data"].items()}

    def config_map(self, name: str) -> dict[str, bytes]:
        (config,) = [c for c in of_kind(self.docs, "ConfigMap") if c["metadata"]["name"] == name]
        return {key: value.encode() for key, value in config["data"].items()}

    def service_port(self, name: str, port: int) -> int:
        """The local port behind port `port` of Service `name`."""
        (service,) = [s for s in of_kind(self.docs, "Service") if s["metadata"]["name"] == name]
        (entry,) = [p for p in service["spec"]["ports"] if p["port"] == port]
        target = entry.get("targetPort", port)
        selector = {"matchLabels": service["spec"]["selector"]}
        for doc in workloads(self.docs):
            if is_hook(doc) or not selects(selector, pod_labels(doc)):
                continue
            for container in pod_spec(doc)["containers"]:
                for declared in container.get("ports", []):
                    if target in (declared["containerPort"], declared.get("name")):
                        return self.ports[(doc["metadata"]["name"], declared["containerPort"])]
        raise AssertionError(f"Service {name} port {port} reaches no container port")

    def localize_services(self, text: str) -> str:
        """`<service>[.<namespace>[.svc[.<domain>]]]:<port>` -> `127.0.0.1:<local port>`."""
        for service in of_kind(self.docs, "Service"):
            name = service["metadata"]["name"]
            pattern = rf"\b{re.escape(name)}(?:\.{NAMESPACE}(?:\.svc(?:\.[a-z.]+)?)?)?:(\d+)\b"
            text = re.sub(
                pattern, lambda m, n=name: f"127.0.0.1:{self.service_port(n, int(m[1]))}", text
            )
        return text


class LocalPod:
    """One workload's pod: its volumes as directories, its containers as processes."""

    def __init__(self, release: LocalRelease, workload: Manifest) -> None:
        self.release = release
        self.workload = workload
        self.name = workload["metadata"]["name"]
        self.spec = pod_spec(workload)
        self.dir = release.root / self.name
        self.volumes = {volume["name"]: self.materialize(volume) for volume in self.volumes_of()}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def volumes_of(self) -> list[dict[str, Any]]:
        claims = [
            {"name": t["metadata"]["name"], "emptyDir": {}}
            for t in self.workload["spec"].get("volumeClaimTemplates", [])
        ]
        return [*self.spec.get("volumes", []), *claims]

    def materialize(self, volume: dict[str, Any]) -> Path:
        """A directory holding what the volume would: Secret or ConfigMap entries, or nothing."""
        path = self.dir / "volumes" / volume["name"]
        path.mkdir(parents=True)
        if "secret" in volume:
            data = self.release.secret(volume["secret"]["secretName"])
        elif "configMap" in volume:
            data = self.release.config_map(volume["configMap"]["name"])
        else:
            return path
        items = volume.get("secret", volume.get("configMap", {})).get("items")
        for key, target in (
            [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
        ):
            (path / target).write_bytes(data[key])
        return path

    def localize(self, text: str, container: dict[str, Any]) -> str:
        """Rewrite mount paths, listen addresses and Service references for this machine."""
        mounts = {
            m["mountPath"]: str(self.volumes[m["name"]]) for m in container.get("volumeMounts", [])
        }
        if mounts:
            paths = "|".join(map(re.escape, sorted(mounts, key=len, reverse=True)))
            text = re.sub(rf"(?<![\w./-])({paths})(?![\w.-])", lambda m: mounts[m[1]], text)
        text = re.sub(r"\b0\.0\.0\.0:(\d+)\b", lambda m: f"127.0.0.1:{self.port(int(m[1]))}", text)
        return self.release.localize_services(text)

    def port(self, container_port: int | str, container: dict[str, Any] | None = None) -> int:
        """The local port of a container port, given by number or by name."""
        if isinstance(container_port, str):
            (container_port,) = [
                p["containerPort"]
                for c in ([container] if container else self.spec["containers"])
                for p in c.get("ports", [])
                if p["name"] == container_port
            ]
        key = (self.name, container_port)
        assert key in self.release.ports, f"{self.name} uses port {container_port}, not declared"
        return self.release.ports[key]

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        resolved = {}
        for item in container.get("env", []):
            source = item.get("valueFrom", {})
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = self.release.secret(ref["name"])[ref["key"]].decode()
            elif "fieldRef" in source:
                assert source["fieldRef"]["fieldPath"] == "metadata.name"
                value = f"{self.name}-0"
            else:
                value = self.localize(item["value"], container)
            resolved[item["name"]] = value
        return resolved

    def argv(self, container: dict[str, Any]) -> list[str]:
        command = [*container.get("command", [""]), *container.get("args", [])]
        return executable(container["image"], [self.localize(arg, container) for arg in command])

    def localize_config_files(self) -> None:
        """Config files (ConfigMap volumes) get the same rewriting as env and args."""
        for container in self.spec["containers"]:
            for mount in container.get("volumeMounts", []):
                volume = next(v for v in self.volumes_of() if v["name"] == mount["name"])
                if "configMap" in volume:
                    for path in self.volumes[mount["name"]].iterdir():
                        text = self.localize(path.read_text(), container)
                        if path.suffix == ".conf":
                            text = self.localize_nats_conf(text)
                        path.write_text(text)

    def localize_nats_conf(self, text: str) -> str:
        """nats.conf names bare ports (`port: 4222`): map them, and listen on loopback only."""
        text = re.sub(
            r"^(\s*(?:port|http_port):\s*)(\d+)\s*$",
            lambda m: f"{m[1]}{self.port(int(m[2]))}",
            text,
            flags=re.M,
        )
        return f"host: 127.0.0.1\n{text}"

    def start(self) -> None:
        """Start every container of the pod."""
        self.localize_config_files()
        for container in self.spec["containers"]:
            self.processes[container["name"]] = self.spawn(container)

    def spawn(self, container: dict[str, Any]) -> subprocess.Popen[bytes]:
        log = self.dir / f"{container['name']}.log"
        base = {"PATH": os.environ["PATH"], "HOME": str(self.dir), "TMPDIR": str(self.dir)}
        with log.open("ab") as out:
            return subprocess.Popen(
                self.argv(container),
                env={**base, **self.env(container)},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
            )

    def log(self, container: dict[str, Any]) -> str:
        path = self.dir / f"{container['name']}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def run(self, container: dict[str, Any], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a container to completion (the helm test's), returning its output."""
        base = {"PATH": os.environ["PATH"], "HOME": str(self.dir), "TMPDIR": str(self.dir)}
        return subprocess.run(
            self.argv(container),
            env={**base, **self.env(container)},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.dir,
        )

    def probe(self, container: dict[str, Any], probe: dict[str, Any]) -> bool:
        """One attempt of a probe, the way the kubelet makes it."""
        if "grpc" in probe:
            return self.grpc_serving(
                self.port(probe["grpc"]["port"], container), probe["grpc"].get("service", "")
            )
        if "httpGet" in probe:
            port = self.port(probe["httpGet"]["port"], container)
            url = f"http://127.0.0.1:{port}{probe['httpGet']['path']}"
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=2) as reply,
            ):
                return 200 <= reply.status < 400
            return False
        if "tcpSocket" in probe:
            with contextlib.suppress(OSError):
                socket.create_connection(
                    ("127.0.0.1", self.port(probe["tcpSocket"]["port"], container)), 2
                ).close()
                return True
            return False
        raise AssertionError(f"unsupported probe {probe}")

    @staticmethod
    def grpc_serving(port: int, service: str) -> bool:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=2
                )
            except grpc.RpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def wait_ready(self, timeout: float) -> None:
        """Wait for each container's startup probe, then require readiness and liveness."""
        deadline = time.monotonic() + timeout
        for container in self.spec["containers"]:
            process = self.processes[container["name"]]
            while not self.probe(container, container["startupProbe"]):
                assert process.poll() is None, f"{self.name} exited:\n{self.log(container)[-3000:]}"
                assert time.monotonic() < deadline, (
                    f"{self.name} not started:\n{self.log(container)[-3000:]}"
                )
                time.sleep(0.1)
            for kind in PROBES[1:]:
                assert self.probe(container, container[kind]), f"{self.name} fails its {kind}"

    def terminate(self) -> dict[str, tuple[int | None, float]]:
        """SIGTERM every container; (exit code, seconds) each, SIGKILL past the grace period."""
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        started = time.monotonic()
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        outcome = {}
        for name, process in self.processes.items():
            try:
                code: int | None = process.wait(max(0.1, grace - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = None
            outcome[name] = (code, time.monotonic() - started)
        return outcome

    def kill(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@contextlib.contextmanager
def running(
    release: LocalRelease, names: list[str], timeout: float = 60
) -> Iterator[dict[str, LocalPod]]:
    """Start these workloads in order, each ready before the next; kill what is left after."""
    pods: dict[str, LocalPod] = {}
    try:
        for name in names:
            (workload,) = [w for w in workloads(release.docs) if w["metadata"]["name"] == name]
            pods[name] = LocalPod(release, workload)
            pods[name].start()
            pods[name].wait_ready(timeout)
        yield pods
    finally:
        for pod in reversed(pods.values()):
            pod.kill()

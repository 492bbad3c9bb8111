"""deploy/helm.mk: every target listed by `make help`, and clear words when Docker or kind
is missing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .chartlib import REPO_ROOT

HELM_MK = REPO_ROOT / "deploy" / "helm.mk"


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(HELM_MK), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_target_has_a_help_line() -> None:
    text = HELM_MK.read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", text, re.M))
    described = set(re.findall(r"^([a-z][a-z0-9-]*):.*## \S", text, re.M))
    assert targets == described
    assert {"chart-lint", "chart-check", "image", "kind-e2e"} <= described


@pytest.fixture
def engineless_docker(tmp_path: Path) -> Path:
    """A docker CLI whose engine does not answer."""
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    return docker


@pytest.mark.parametrize("target", ["image", "kind-e2e"])
def test_a_missing_docker_is_named(target: str) -> None:
    result = make(target, "DOCKER=/nonexistent/docker", "KIND=/nonexistent/kind")
    assert result.returncode != 0
    assert f"make {target}: Docker is missing" in result.stderr


@pytest.mark.parametrize("target", ["image", "kind-e2e"])
def test_a_docker_cli_without_engine_is_named(target: str, engineless_docker: Path) -> None:
    result = make(target, f"DOCKER={engineless_docker}")
    assert result.returncode != 0
    assert f"make {target}: Docker is installed but no Docker engine answers" in result.stderr


def test_kind_e2e_names_a_missing_kind(engineless_docker: Path) -> None:
    result = make("kind-e2e", f"DOCKER={engineless_docker}", "KIND=/nonexistent/kind")
    assert "make kind-e2e: kind is missing" in result.stderr
    assert "docker build" not in result.stdout

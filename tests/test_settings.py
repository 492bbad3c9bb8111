"""Settings are validated at start-up with messages that name the variable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamer_common.ids import id_problem
from streamer_common.settings import SettingsError, load, parse_duration, variables
from streamer_edge.memory import cgroup_limit, check_memory_limit, worst_case_bytes
from streamer_edge.settings import EdgeSettings
from streamer_producer.settings import ProducerSettings

DOCS = Path(__file__).parents[1] / "docs" / "configuration.md"
TLS = {"EDGE_TLS_CERT_FILE": "c", "EDGE_TLS_KEY_FILE": "k"}


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("2m", 120), ("1h", 3600), ("1.5", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_edge_defaults_listen_on_50051_with_tls() -> None:
    settings = load(EdgeSettings, "EDGE", TLS)

    assert settings.grpc_address == "0.0.0.0:50051"
    assert not settings.plaintext


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "TLS_CERT_FILE and TLS_KEY_FILE are required"),
        ({**TLS, "EDGE_MAX_STREAMS": "many"}, "EDGE_MAX_STREAMS"),
        ({**TLS, "EDGE_STALL_TIMEOUT": "soon"}, "EDGE_STALL_TIMEOUT"),
        ({**TLS, "EDGE_PLAINTEXT": "maybe"}, "EDGE_PLAINTEXT"),
        ({**TLS, "EDGE_STREAM_BUFFER_BYTES": "1000"}, "STREAM_BUFFER_BYTES"),
        ({**TLS, "EDGE_DATA_MAX_CONSUMERS": "0"}, "DATA_MAX_CONSUMERS must be at least 1"),
        ({**TLS, "EDGE_INTEREST_INTERVAL": "5ms"}, "INTEREST_INTERVAL must be 10ms to 60s"),
        (
            {**TLS, "EDGE_DATA_MAX_BYTES": "1000"},
            r"DATA_MAX_BYTES must be -1 \(no limit\) or at least MAX_MESSAGE_BYTES \(1048576\)",
        ),
        ({**TLS, "EDGE_JOBS_MAX_BYTES": "0"}, "JOBS_MAX_BYTES must be -1"),
        (
            {**TLS, "EDGE_MAX_STREAMS": "20000"},
            r"MAX_STREAMS \(20000\) must be at most DATA_MAX_CONSUMERS \(10000\)",
        ),
    ],
)
def test_bad_edge_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(EdgeSettings, "EDGE", environ)


@pytest.mark.parametrize("interval", ["0", "2m"])
def test_a_producer_interest_interval_out_of_bounds_is_refused(interval: str) -> None:
    with pytest.raises(SettingsError, match="INTEREST_INTERVAL must be 10ms to 60s"):
        load(ProducerSettings, "PRODUCER", {"PRODUCER_INTEREST_INTERVAL": interval})


def test_producer_list_settings() -> None:
    settings = load(
        ProducerSettings,
        "PRODUCER",
        {"PRODUCER_RETRY_BACKOFF": "100ms, 2s", "PRODUCER_HANDLER_MODULES": "a.b,c"},
    )

    assert settings.retry_backoff == (0.1, 2.0)
    assert settings.handler_modules == ("a.b", "c")


def test_edge_exits_with_a_clear_message_on_bad_settings() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "streamer_edge"],
        capture_output=True,
        text=True,
        env={"EDGE_PLAINTEXT": "false", "PATH": "/usr/bin"},
        timeout=60,
    )

    assert run.returncode != 0
    assert "invalid settings" in run.stderr
    assert "TLS_CERT_FILE" in run.stderr


def producer_with_handlers(modules: str, path: Path) -> subprocess.CompletedProcess[str]:
    """A producer process started with PRODUCER_HANDLER_MODULES=`modules`, `path` importable."""
    return subprocess.run(
        [sys.executable, "-m", "streamer_producer"],
        capture_output=True,
        text=True,
        env={
            "PRODUCER_HANDLER_MODULES": modules,
            "PRODUCER_NATS_URL": "nats://127.0.0.1:1",
            "PYTHONPATH": str(path),
            "PATH": "/usr/bin",
        },
        timeout=60,
    )


def test_a_handler_module_not_found_is_named_in_one_line(tmp_path: Path) -> None:
    run = producer_with_handlers("acme.handlers", tmp_path)

    assert run.returncode != 0
    assert run.stderr.strip() == (
        "streamer-producer: invalid settings: PRODUCER_HANDLER_MODULES: no module "
        "'acme.handlers' on the producer's path (no 'acme'); install the package, or add its "
        "directory to PYTHONPATH"
    )


def test_a_module_a_handler_module_imports_shows_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "acme_handlers.py").write_text("import acme_dependency_not_installed\n")

    run = producer_with_handlers("acme_handlers", tmp_path)

    assert run.returncode != 0
    assert 'acme_handlers.py", line 1' in run.stderr
    assert "No module named 'acme_dependency_not_installed'" in run.stderr


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"`((?:EDGE_|PRODUCER_)?[A-Z_]+)`", DOCS.read_text()))
    names = variables(EdgeSettings, "EDGE") + variables(ProducerSettings, "PRODUCER")

    undocumented = [
        name for name in names if name not in documented and name.split("_", 1)[1] not in documented
    ]
    assert undocumented == []


@pytest.mark.parametrize("good", ["a", "A-z_0", "x" * 128])
def test_good_ids(good: str) -> None:
    assert id_problem(good) is None


@pytest.mark.parametrize(
    ("limit", "streams", "warned"),
    [
        ("536870912\n", 153, False),  # 153 x 2.5 MiB + 128 MiB = 510.5 MiB fits 512 MiB
        ("536870912\n", 154, True),  # 513 MiB does not
        ("max\n", 100_000, False),  # cgroup v2 without a limit
        ("9223372036854771712\n", 100_000, False),  # cgroup v1 without a limit
    ],
)
def test_the_edge_warns_when_slow_clients_could_exceed_its_memory_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, limit: str, streams: int, warned: bool
) -> None:
    limits = {"EDGE_MAX_STREAMS": str(streams), "EDGE_DATA_MAX_CONSUMERS": str(streams)}
    settings = load(EdgeSettings, "EDGE", {**TLS, **limits})
    memory_max = tmp_path / "memory.max"
    memory_max.write_text(limit)

    check_memory_limit(settings, [tmp_path / "absent", memory_max])

    assert worst_case_bytes(settings) == streams * (2 * 1024 * 1024 + 512 * 1024) + 128 * 2**20
    assert any("EDGE_MAX_STREAMS" in r.getMessage() for r in caplog.records) == warned


def test_no_cgroup_file_means_no_memory_limit(tmp_path: Path) -> None:
    assert cgroup_limit([tmp_path / "memory.max"]) is None

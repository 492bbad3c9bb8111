"""A client generated from the original definition works unmodified against the edge."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamer_devstack.stack import Stack
from support import new_id

ORIGINAL_PROTO = Path(__file__).parent / "original" / "stream.proto"

CLIENT = """
import sys
import grpc
import stream_pb2, stream_pb2_grpc

target, ca, stream_id = sys.argv[1:4]
credentials = grpc.ssl_channel_credentials(open(ca, "rb").read())
with grpc.secure_channel(target, credentials) as channel:
    call = stream_pb2_grpc.StreamerStub(channel).Stream(stream_pb2.Request(id=stream_id))
    for data in call:
        print(data.sequence, data.data.decode())
    print("status", call.code().name)
"""


def test_original_definition_client_streams_to_the_end(shared_stack: Stack, tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ORIGINAL_PROTO.parent}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            ORIGINAL_PROTO.name,
        ],
        check=True,
    )
    (tmp_path / "client.py").write_text(CLIENT)
    port = shared_stack.edge.ready["port"]  # type: ignore[union-attr]

    run = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "client.py"),
            f"localhost:{port}",
            str(shared_stack.tls.cert),
            new_id(),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    lines = run.stdout.splitlines()
    assert lines[:2] == ["1 DATA 0", "2 DATA 1"]
    assert lines[99] == "100 DATA 99"
    assert lines[100:] == ["0 ", "status OK"]
    assert "after_sequence" not in (tmp_path / "stream_pb2.py").read_text()

"""`streamer-client`: read one stream from the edge and print it as it arrives."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

import grpc

from streamer_common.proto import stream_pb2, stream_pb2_grpc

LAST_SEQUENCE_KEY = "streamer-last-sequence"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="streamer-client", description=__doc__)
    parser.add_argument("--target", default="localhost:50051", help="edge address host:port")
    parser.add_argument(
        "--ca-file",
        default=".local/tls/app.crt",
        help="CA certificate that signed the edge's certificate",
    )
    parser.add_argument("--cert-file", help="client certificate, when the edge requires mTLS")
    parser.add_argument("--key-file", help="client key, when the edge requires mTLS")
    parser.add_argument("--authority", help="name to verify in the edge's certificate")
    parser.add_argument("--plaintext", action="store_true", help="connect without TLS")
    parser.add_argument("--id", default="", help="stream id (default: a fresh one)")
    parser.add_argument("--job", default="", help="job handler (default: the edge's default)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="handler parameter, repeatable",
    )
    parser.add_argument(
        "--after-sequence", type=int, default=0, help="resume: only sequences greater than this one"
    )
    parser.add_argument("--timeout", type=float, default=None, help="deadline in seconds")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--batches",
        action="store_true",
        help="call StreamBatches: ready items arrive together, for high rates",
    )
    args = parser.parse_args(argv)
    for param in args.param:
        if "=" not in param:
            parser.error(f"--param {param!r} is not KEY=VALUE")
    return args


def channel(args: argparse.Namespace) -> grpc.aio.Channel:
    """A channel to the edge, over TLS unless --plaintext."""
    if args.plaintext:
        return grpc.aio.insecure_channel(args.target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(args.ca_file).read_bytes(),
        private_key=Path(args.key_file).read_bytes() if args.key_file else None,
        certificate_chain=Path(args.cert_file).read_bytes() if args.cert_file else None,
    )
    options = [("grpc.ssl_target_name_override", args.authority)] if args.authority else []
    return grpc.aio.secure_channel(args.target, credentials, options=options)


def render(data: bytes) -> str:
    """Chunk data as text when it is text, else its size."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return f"<{len(data)} bytes>"


def show(data: stream_pb2.Data, quiet: bool) -> None:
    """Print one item, or the end of the stream."""
    if data.sequence == 0:
        print("Stream is over", flush=True)
    elif not quiet:
        print(f"Sequence[{data.sequence}]: {render(data.data)}", flush=True)


async def run(args: argparse.Namespace) -> int:
    """Stream and print; the exit code is 0 on a complete stream, 1 otherwise."""
    request = stream_pb2.Request(
        id=args.id or uuid.uuid4().hex,
        job=args.job,
        after_sequence=args.after_sequence,
        params=dict(param.split("=", 1) for param in args.param),
    )
    async with channel(args) as chan:
        stub = stream_pb2_grpc.StreamerStub(chan)
        call = (stub.StreamBatches if args.batches else stub.Stream)(request, timeout=args.timeout)
        try:
            async for message in call:
                for data in message.items if args.batches else (message,):
                    show(data, args.quiet)
        except grpc.aio.AioRpcError as error:
            last = dict(error.trailing_metadata() or ()).get(LAST_SEQUENCE_KEY, "?")
            print(
                f"error: {error.code().name}: {error.details()} (id {request.id}, last "
                f"sequence {last})",
                file=sys.stderr,
            )
            return 1
    return 0


def main() -> None:
    """Entry point."""
    sys.exit(asyncio.run(run(parse_args())))


if __name__ == "__main__":
    main()

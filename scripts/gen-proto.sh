#!/usr/bin/env bash
# Regenerates the committed stubs of proto/stream.proto into the shared package.
set -euo pipefail
out=packages/streamer-common/src/streamer_common/proto
"${UV:-uv}" run --frozen python -m grpc_tools.protoc -Iproto --python_out="$out" --pyi_out="$out" \
  --grpc_python_out="$out" proto/stream.proto
sed -i 's/^import stream_pb2 as stream__pb2$/from streamer_common.proto import stream_pb2 as stream__pb2/' \
  "$out/stream_pb2_grpc.py"

"""Generated protobuf and gRPC stubs of proto/stream.proto (do not edit; `make proto`)."""

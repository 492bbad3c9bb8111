"""grpc-edge: relays NATS JetStream streams to gRPC clients."""

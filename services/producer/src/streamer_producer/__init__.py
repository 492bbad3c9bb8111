"""Producer workers: run job handlers and publish their chunks to NATS JetStream."""

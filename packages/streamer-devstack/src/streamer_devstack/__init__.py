"""Local stack for development, demos and tests: nats-server, producers, edge and dev TLS."""

"""Shared parts of the streamer services: wire stubs, NATS topology, settings and lifecycle."""

"""`make bench`: the streamer against bare grpcio and nats-py, measured in the same run."""

"""Command-line client for the streamer edge."""

"""Checks of the Helm chart, the image and the delivery tooling (deploy/)."""

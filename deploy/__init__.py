"""Deployment tooling: generated shard addresses, and validation of the images and manifests."""

"""Ingest service: turns videos into embedded, indexed clips through a job queue on Redis."""

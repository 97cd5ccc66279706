"""The archivist's web app: an HTTP/JSON API and small static pages over the gateway and ingest (gRPC)."""

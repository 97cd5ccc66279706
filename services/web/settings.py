"""Settings of the web app, from VIDSEARCH_WEB_* variables (``services.common.settings``)."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from services.common.settings import SettingsError


@dataclasses.dataclass(frozen=True)
class HttpServerSettings:
    """Where the HTTP server listens."""

    host: str = "127.0.0.1"
    port: int = 8080
    # Seconds to let in-flight requests finish on SIGTERM (uvicorn's graceful shutdown).
    grace_seconds: float = 10.0
    # Serve a non-loopback address without API keys. Only where something else limits who can
    # connect: a container whose port is published on the host's loopback (docker-compose.yml).
    allow_without_keys: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be 0..65535, got {self.port}")

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclasses.dataclass(frozen=True)
class WebSettings:
    """The backends the app calls, its limits, and who may call it."""

    gateway: str = dataclasses.field(metadata={"help": "gateway address, host:port or dns:///name:port"})
    # Unset: the ingest page and the upload, job and delete endpoints answer 503.
    ingest: str | None = None
    # One "<key> <read|write>" per line, as for the gateway: the app checks the caller's key before
    # reading an upload and passes it on to the gateway and ingest. Unset: loopback only.
    api_keys_file: Path | None = None
    # Largest video upload (the ingest service has its own limit too).
    max_upload_bytes: int = 2 * 1024 * 1024 * 1024
    # Largest image or video sent as a search query.
    max_query_bytes: int = 48 * 1024 * 1024
    search_timeout_s: float = 30.0
    upload_timeout_s: float = 3600.0
    # Cut clips kept in memory for Range requests (a <video> element asks several times).
    clip_cache_bytes: int = 256 * 1024 * 1024
    # TLS to the gateway and ingest (when they serve it): the CA to trust, and the name their
    # certificate is issued for when it differs from the address's host.
    tls_ca_file: Path | None = None
    tls_server_name: str | None = None
    server: HttpServerSettings = dataclasses.field(default_factory=HttpServerSettings)

    def __post_init__(self) -> None:
        if self.api_keys_file is None and not self.server.loopback and not self.server.allow_without_keys:
            raise SettingsError(
                f"server_host {self.server.host!r} is not a loopback address: without api_keys_file the "
                "web app serves loopback only (set VIDSEARCH_WEB_API_KEYS_FILE to serve a network)")
        for name in ("max_upload_bytes", "max_query_bytes", "clip_cache_bytes"):
            if getattr(self, name) < 1024:
                raise SettingsError(f"{name} must be >= 1024")
        if self.search_timeout_s <= 0 or self.upload_timeout_s <= 0:
            raise SettingsError("timeouts must be > 0")

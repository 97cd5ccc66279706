"""Settings of the web app, from VIDSEARCH_WEB_* variables (``services.common.settings``)."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from services.common.settings import SettingsError, setting


@dataclasses.dataclass(frozen=True)
class HttpServerSettings:
    """Where the HTTP server listens."""

    host: str = setting("127.0.0.1", "Address to listen on; beyond loopback only with API keys (or "
                        "allow_without_keys).")
    port: int = setting(8080, "HTTP port.")
    grace_seconds: float = setting(10.0, "Time in-flight requests get to finish after SIGTERM; below the pod's "
                                   "termination grace period.")
    allow_without_keys: bool = setting(
        False, "Serve a non-loopback address without API keys. Only where something else limits who can connect: "
        "a container whose port is published on the host's loopback (docker-compose.yml).")

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

    gateway: str = setting(doc="Gateway address, host:port or dns:///name:port.")
    ingest: str | None = setting(None, "Ingest address; unset, uploads, jobs and deletes answer 503.")
    api_keys_file: Path | None = setting(
        None, "One `<key> <read|write>` per line, as for the gateway: the app checks the caller's key (x-api-key "
        "or Authorization: Bearer) before reading an upload and passes it on. Unset: loopback only.")
    max_upload_bytes: int = setting(2 * 1024**3, "Largest video upload (413 above it); ingest has its own limit.")
    max_query_bytes: int = setting(48 * 1024**2, "Largest image or video sent as a search query.")
    search_timeout_s: float = setting(30.0, "Deadline of a search call to the gateway.")
    upload_timeout_s: float = setting(3600.0, "Deadline of an upload, and of following a job's events.")
    clip_cache_bytes: int = setting(256 * 1024**2, "Cut clips kept in memory for HTTP Range requests.")
    tls_ca_file: Path | None = setting(None, "CA to trust for TLS to the gateway and ingest; unset: plaintext.")
    tls_server_name: str | None = setting(
        None, "Name the gateway's and ingest's certificates are issued for, when it differs from the address.")
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

"""Typed settings read from the environment, validated once at start-up.

Each service declares a frozen dataclass; ``load(cls, prefix)`` fills it from variables named
``<PREFIX>_<FIELD>`` (upper case). A field without a default is required: a missing or
malformed value fails fast with a message naming the variable and what it should hold, and so
does a variable under the prefix that no field reads (a misspelt name would else be ignored).
Every field is declared with ``setting(default, "what it means")``: that text is the one source
of docs/settings.md (``python -m services.common.settings_doc --write``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A required setting is missing or a value cannot be parsed; the service must not start."""


def setting(default: Any = dataclasses.MISSING, doc: str = "") -> Any:
    """A settings field with its description (no default: required)."""
    return dataclasses.field(default=default, metadata={"help": doc})


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Options every gRPC server shares (bind address, limits, keepalive, shutdown, TLS)."""

    host: str = setting("127.0.0.1", "Address to listen on; 0.0.0.0 in a container.")
    port: int = setting(0, "gRPC port; 0 binds a free port, which is logged and written to port_file.")
    port_file: Path | None = setting(None, "Where to write the bound port (for tests and the local stack).")
    metrics_port: int = setting(0, "Port of the Prometheus /metrics endpoint; 0 disables it.")
    grace_seconds: float = setting(
        10.0, "Drain time after SIGTERM (health NOT_SERVING first); below the pod's termination grace period. "
        "Also the grace of an aged-out connection's calls.")
    max_message_bytes: int = setting(64 * 1024 * 1024, "Largest gRPC message received or sent.")
    keepalive_time_ms: int = setting(30_000, "Interval of HTTP/2 keepalive pings to idle clients.")
    keepalive_timeout_ms: int = setting(10_000, "A client that does not answer a ping within this is dropped.")
    max_concurrent_rpcs: int = setting(1000, "Calls handled at once; further calls get RESOURCE_EXHAUSTED.")
    max_connection_age_ms: int = setting(
        300_000, "Connections are closed (gracefully) after this long, so clients re-resolve DNS and spread "
        "over new replicas.")
    tls_cert_file: Path | None = setting(None, "Server certificate (PEM); with tls_key_file, serves TLS.")
    tls_key_file: Path | None = setting(None, "Private key of tls_cert_file (PEM).")
    tls_client_ca_file: Path | None = setting(
        None, "CA that must have signed the clients' certificates (mutual TLS); needs tls_cert_file.")

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be 0..65535, got {self.port}")
        if self.grace_seconds < 0:
            raise SettingsError(f"grace_seconds must be >= 0, got {self.grace_seconds}")
        if self.max_message_bytes < 1024:
            raise SettingsError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes}")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise SettingsError("tls_cert_file and tls_key_file must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise SettingsError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")


def check_redis_password_file(redis_url: str | None, password_file: Path | None) -> None:
    """A Redis password comes from a file (a mounted Secret), once: never also in the URL."""
    if password_file is None:
        return
    if not redis_url:
        raise SettingsError("redis_password_file is set but redis_url is not")
    if urllib.parse.urlsplit(redis_url).password:
        raise SettingsError("redis_url carries a password and redis_password_file is set; give it once, in the file")
    if not password_file.is_file():
        raise SettingsError(f"redis_password_file {password_file} is not a readable file")


def read_secret(path: Path | None) -> str | None:
    """The content of a mounted Secret file without its trailing newline; None when unset."""
    if path is None:
        return None
    value = path.read_text().rstrip("\r\n")
    if not value:
        raise SettingsError(f"{path} is empty")
    return value


def _parse(name: str, raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return None if raw == "" else _parse(name, raw, inner[0])
    if origin is tuple:
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        return tuple(_parse(name, part.strip(), item) for part in raw.split(",") if part.strip())
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
        if kind in (int, float, str, Path):
            return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    raise SettingsError(f"{name}: unsupported setting type {kind!r}")


#: Read by the command-line clients (``vidsearch search``, ``vidsearch ingest``), not by the
#: services, although they share a service's prefix; a shell that sets them may start the stack.
CLIENT_VARIABLES = frozenset({"VIDSEARCH_GATEWAY_ADDRESS", "VIDSEARCH_INGEST_ADDRESS"})


def known_names(cls: type, prefix: str) -> list[str]:
    """Every variable ``load(cls, prefix)`` reads, nested settings (``<PREFIX>_SERVER_*``) included."""
    hints = typing.get_type_hints(cls)
    names: list[str] = []
    for field in dataclasses.fields(cls):
        name = f"{prefix}_{field.name}".upper()
        names += known_names(hints[field.name], name) if dataclasses.is_dataclass(hints[field.name]) else [name]
    return names


def check_unknown(cls: type, prefix: str, env: Mapping[str, str]) -> None:
    """Fails on a ``<PREFIX>_*`` variable that no field of ``cls`` reads, listing the known names."""
    known = set(known_names(cls, prefix)) | CLIENT_VARIABLES
    unknown = sorted(k for k in env if k.startswith(f"{prefix.upper()}_") and k not in known)
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name.upper(), known, n=1)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise SettingsError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
                        f"the known ones are {', '.join(sorted(known - CLIENT_VARIABLES))}")


def load(cls: type[T], prefix: str, env: Mapping[str, str] | None = None) -> T:
    """Builds ``cls`` from ``env`` (default ``os.environ``); nested dataclasses extend the prefix.

    Every variable under the prefix must be one ``cls`` reads: a misspelt name fails, not ignored.
    """
    env = os.environ if env is None else env
    check_unknown(cls, prefix, env)
    return _load(cls, prefix, env)


def _load(cls: type[T], prefix: str, env: Mapping[str, str]) -> T:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        name = f"{prefix}_{field.name}".upper()
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            values[field.name] = _load(kind, name, env)
            continue
        if name in env:
            values[field.name] = _parse(name, env[name], kind)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            help_text = field.metadata.get("help", "")
            raise SettingsError(f"{name} is required" + (f": {help_text}" if help_text else ""))
    try:
        return cls(**values)
    except SettingsError as exc:
        raise SettingsError(f"{prefix}: {exc}") from None


def load_or_exit(cls: type[T], prefix: str) -> T:
    """``load`` for a service's ``main``: a bad configuration ends the process with status 2."""
    try:
        return load(cls, prefix)
    except SettingsError as exc:
        import logging
        import sys

        logging.getLogger(__name__).error("configuration error: %s", exc)
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

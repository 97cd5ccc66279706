"""How the command-line clients reach a deployment: address, TLS and API key, from flags and environment.

``vidsearch search`` and ``vidsearch ingest`` take the same settings under the same names as the
Node CLI (docs/clients.md): ``--gateway``/``--ingest``, ``--api-key-file``, ``--tls-ca``,
``--tls-cert``/``--tls-key`` (mutual TLS) and ``--tls-server-name``, each also read from a
``VIDSEARCH_CLIENT_*`` variable; a flag wins over its variable. The API key itself is never a
flag (``ps`` would show it): it comes from ``--api-key-file``, else ``VIDSEARCH_CLIENT_API_KEY_FILE``,
else ``VIDSEARCH_CLIENT_API_KEY``. TLS is on as soon as any TLS setting is given.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.channels import ClientTLS
from services.common.server import client_options
from services.common.settings import SettingsError

ENV_PREFIX = "VIDSEARCH_CLIENT_"
# Default address per service; None means the address must be given.
DEFAULT_ADDRESS = {"gateway": "127.0.0.1:50051", "ingest": None}
# Names read before VIDSEARCH_CLIENT_*; still honoured, with a warning, until the next release.
DEPRECATED_NAMES = {
    "VIDSEARCH_CLIENT_GATEWAY_ADDRESS": "VIDSEARCH_GATEWAY_ADDRESS",
    "VIDSEARCH_CLIENT_INGEST_ADDRESS": "VIDSEARCH_INGEST_ADDRESS",
    "VIDSEARCH_CLIENT_API_KEY_FILE": "VIDSEARCH_API_KEY_FILE",
    "VIDSEARCH_CLIENT_API_KEY": "VIDSEARCH_API_KEY",
}
# Flag (argparse dest) -> variable, for the TLS settings.
TLS_SETTINGS = {
    "tls_ca": "VIDSEARCH_CLIENT_TLS_CA_FILE",
    "tls_cert": "VIDSEARCH_CLIENT_TLS_CERT_FILE",
    "tls_key": "VIDSEARCH_CLIENT_TLS_KEY_FILE",
    "tls_server_name": "VIDSEARCH_CLIENT_TLS_SERVER_NAME",
}


def address_variable(service: str) -> str:
    return f"{ENV_PREFIX}{service.upper()}_ADDRESS"


def add_arguments(parser: argparse.ArgumentParser, service: str) -> None:
    """Adds the address flag of ``service`` ("gateway" or "ingest") and the API key and TLS flags."""
    default = DEFAULT_ADDRESS[service]
    group = parser.add_argument_group("connection", "flags win over the VIDSEARCH_CLIENT_* variables")
    group.add_argument(f"--{service}", metavar="ADDR", default=None,
                       help=f"{service} address, host:port (env {address_variable(service)}"
                            + (f", default {default})" if default else ")"))
    group.add_argument("--api-key-file", metavar="PATH", type=Path, default=None,
                       help="file holding the API key (env VIDSEARCH_CLIENT_API_KEY_FILE, "
                            "or the key itself in VIDSEARCH_CLIENT_API_KEY)")
    group.add_argument("--tls-ca", metavar="PATH", type=Path, default=None,
                       help="CA certificate to trust; turns TLS on (env VIDSEARCH_CLIENT_TLS_CA_FILE)")
    group.add_argument("--tls-cert", metavar="PATH", type=Path, default=None,
                       help="client certificate for mutual TLS, with --tls-key (env VIDSEARCH_CLIENT_TLS_CERT_FILE)")
    group.add_argument("--tls-key", metavar="PATH", type=Path, default=None,
                       help="client private key for mutual TLS (env VIDSEARCH_CLIENT_TLS_KEY_FILE)")
    group.add_argument("--tls-server-name", metavar="NAME", default=None,
                       help="name the server's certificate must carry, when not the address's host; "
                            "turns TLS on (env VIDSEARCH_CLIENT_TLS_SERVER_NAME)")


@dataclass(frozen=True)
class ClientConnection:
    """Where one service is and how to reach it: its address, TLS (None: plaintext) and API key."""

    address: str
    tls: ClientTLS | None = None
    api_key: str | None = None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What every call sends: the API key as ``x-api-key`` (services.common.auth)."""
        return (("x-api-key", self.api_key),) if self.api_key else ()

    def _options(self) -> list[tuple[str, object]]:
        return [*client_options(), *(self.tls.channel_options() if self.tls else ())]

    def channel(self) -> grpc.Channel:
        """A blocking channel (``vidsearch search``)."""
        if self.tls is None:
            return grpc.insecure_channel(self.address, options=self._options())
        return grpc.secure_channel(self.address, self.tls.credentials(), options=self._options())

    def aio_channel(self) -> grpc.aio.Channel:
        """An asyncio channel (``vidsearch ingest``)."""
        if self.tls is None:
            return grpc.aio.insecure_channel(self.address, options=self._options())
        return grpc.aio.secure_channel(self.address, self.tls.credentials(), options=self._options())

    def describe_failure(self, err: grpc.RpcError) -> str:
        """A failed call's status; for UNAVAILABLE, what to check should the connection itself have failed."""
        text = f"{err.code().name}: {err.details()}"
        if err.code() != grpc.StatusCode.UNAVAILABLE:
            return text
        if self.tls is None:
            return (f"{text}\n  (if {self.address} could not be reached over plaintext and the service uses TLS: "
                    "give --tls-ca and, for mutual TLS, --tls-cert and --tls-key)")
        name = self.tls.server_name or self.address.rsplit(":", 1)[0]
        return (f"{text}\n  (if the TLS connection to {self.address} failed: the server's certificate must be "
                f"signed by {self.tls.ca_file or 'a CA in the default trust store'} (--tls-ca) and name {name!r} "
                "(--tls-server-name); a mutual-TLS server also needs --tls-cert and --tls-key)")


def _deprecated(env: Mapping[str, str], name: str) -> str | None:
    old = DEPRECATED_NAMES[name]
    if not env.get(old):
        return None
    print(f"vidsearch: warning: {old} is deprecated; set {name} instead", file=sys.stderr)
    return env[old]


def _file(flag: str, value: object) -> Path | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise SettingsError(f"{flag} {path}: no such file")
    return path


def from_args(args: argparse.Namespace, service: str, env: Mapping[str, str] | None = None) -> ClientConnection:
    """The connection the flags in ``args`` and the environment describe; a wrong setting is SettingsError."""
    env = os.environ if env is None else env
    variable = address_variable(service)
    address = getattr(args, service) or env.get(variable) or _deprecated(env, variable) or DEFAULT_ADDRESS[service]
    if not address:
        raise SettingsError(f"no {service} address: pass --{service} or set {variable}")

    def setting(dest: str) -> tuple[str, object]:
        """(where it came from, value) of one TLS setting: the flag, else its variable."""
        if getattr(args, dest):
            return f"--{dest.replace('_', '-')}", getattr(args, dest)
        return TLS_SETTINGS[dest], env.get(TLS_SETTINGS[dest]) or None

    ca, cert, key = (_file(*setting(dest)) for dest in ("tls_ca", "tls_cert", "tls_key"))
    server_name = setting("tls_server_name")[1]
    if (cert is None) != (key is None):
        raise SettingsError("--tls-cert and --tls-key go together (mutual TLS needs both)")
    tls = None
    if ca or cert or server_name:
        tls = ClientTLS(ca_file=ca, cert_file=cert, key_file=key, server_name=str(server_name) if server_name else None)
    return ClientConnection(address, tls, _api_key(args, env))


def _api_key(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """--api-key-file, else VIDSEARCH_CLIENT_API_KEY_FILE, else VIDSEARCH_CLIENT_API_KEY (then the old names)."""
    flag, named = "--api-key-file", args.api_key_file
    key = env.get("VIDSEARCH_CLIENT_API_KEY")
    if named is None:
        flag, named = "VIDSEARCH_CLIENT_API_KEY_FILE", env.get("VIDSEARCH_CLIENT_API_KEY_FILE") or None
    if named is None and not key:
        flag, named = "VIDSEARCH_API_KEY_FILE", _deprecated(env, "VIDSEARCH_CLIENT_API_KEY_FILE")
        if named is None:
            key = _deprecated(env, "VIDSEARCH_CLIENT_API_KEY")
    key_file = _file(flag, named)
    if key_file is not None:
        key = key_file.read_text()
        if len(key.split()) != 1:
            raise SettingsError(f"API key file {key_file} must hold the key alone (one word), not a keys table")
    return (key or "").strip() or None

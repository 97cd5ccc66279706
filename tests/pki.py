"""A throwaway certificate authority for tests: a CA, a server certificate and a client certificate.

Made with the ``openssl`` command line (Debian's ``openssl`` package). The server certificate
names only ``server_name`` (not 127.0.0.1), so clients on loopback must say which name to verify.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoopbackPKI:
    """File paths of one CA and the certificates it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    server_name: str


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _signed(name: str, cn: str, extensions: str, cwd: Path) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=cwd)


def make_pki(directory: Path, server_name: str = "search.vidsearch.test") -> LoopbackPKI:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vidsearch test CA",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)
    _signed("server", server_name, f"subjectAltName=DNS:{server_name}\nextendedKeyUsage=serverAuth\n", directory)
    _signed("client", "vidsearch test client", "extendedKeyUsage=clientAuth\n", directory)
    d = directory
    return LoopbackPKI(ca=d / "ca.crt", server_cert=d / "server.crt", server_key=d / "server.key",
                       client_cert=d / "client.crt", client_key=d / "client.key", server_name=server_name)

"""Container health check: exits 0 when a gRPC server reports SERVING, 1 otherwise.

Used by the images' HEALTHCHECK, docker-compose and, where the server speaks TLS (which the
kubelet's native gRPC probe cannot), by Kubernetes exec probes. grpc_health_probe does the same
but is not packaged in any registry these images are built from. TLS options default to
VIDSEARCH_HEALTHCHECK_TLS_{CA,CERT,KEY,SERVER_NAME}, so a probe command stays the same whether
or not the server speaks TLS.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

_ENV = "VIDSEARCH_HEALTHCHECK_TLS"


def _env_path(what: str) -> Path | None:
    value = os.environ.get(f"{_ENV}_{what}")
    return Path(value) if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("address", nargs="?", default="127.0.0.1:50051")
    parser.add_argument("--service", default="", help="service name to check; empty: the whole server")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--tls-ca", type=Path, default=_env_path("CA"),
                        help="CA bundle: connect with TLS and trust this CA")
    parser.add_argument("--tls-cert", type=Path, default=_env_path("CERT"),
                        help="client certificate, for servers that require mutual TLS")
    parser.add_argument("--tls-key", type=Path, default=_env_path("KEY"),
                        help="client key, for servers that require mutual TLS")
    parser.add_argument("--tls-server-name", default=os.environ.get(f"{_ENV}_SERVER_NAME") or None,
                        help="name to verify the server certificate against")
    args = parser.parse_args(argv)
    if args.tls_ca is not None:
        creds = grpc.ssl_channel_credentials(
            root_certificates=args.tls_ca.read_bytes(),
            private_key=args.tls_key.read_bytes() if args.tls_key else None,
            certificate_chain=args.tls_cert.read_bytes() if args.tls_cert else None,
        )
        options = [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
        channel = grpc.secure_channel(args.address, creds, options=options)
    else:
        channel = grpc.insecure_channel(args.address)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"{args.address}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{args.address}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    raise SystemExit(main())

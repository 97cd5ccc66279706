"""Service processes and a redis-server on loopback: used by `vidsearch up`, the demo, tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.channels import ClientTLS

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_status(address: str, service: str = "", timeout: float = 2.0, tls: ClientTLS | None = None) -> int | None:
    """The health status of a server (over TLS with ``tls``), or None when it does not answer."""
    channel = (grpc.secure_channel(address, tls.credentials(), options=tls.channel_options()) if tls
               else grpc.insecure_channel(address))
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return None
        return reply.status


class ServiceProcess:
    """A service started as ``python -m <module>`` with its settings in the environment."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path, port: int | None = None,
                 env_prefix: str = "", probe_tls: ClientTLS | None = None) -> None:
        self.module = module
        # How wait_serving reaches a server that speaks TLS.
        self.probe_tls = probe_tls
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            f"{env_prefix}_SERVER_PORT": str(self.port),
            **env,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def wait_serving(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if health_status(self.address, timeout=0.5, tls=self.probe_tls) == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.module} not SERVING after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)


class HttpServiceProcess(ServiceProcess):
    """A service that answers HTTP (the web app): ready when ``GET /readyz`` says 200."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self, timeout: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=timeout) as reply:
                return reply.status == 200
        except (OSError, ValueError):
            return False

    def wait_serving(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ready(timeout=0.5):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.module} not ready after {timeout}s:\n{self.log_tail()}")


class RedisServer:
    """A throwaway redis-server on a free loopback port (Debian's binary)."""

    def __init__(self, data_dir: Path, port: int | None = None, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.data_dir = data_dir
        self.password = password
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):  # up (NOAUTH: up, with a password)
                        return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

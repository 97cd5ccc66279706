"""The Redis users deploy/README.md tells operators to create, tried on a real redis-server with the
manifests' redis.conf: the services get in as "vidsearch" with the password file, anyone else may
only PING (what the readiness probe sends)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from deploy import validate
from services.common.settings import read_secret
from tests.procs import free_port

PASSWORD = "0123456789abcdef0123456789abcdef"


def _users_acl() -> str:
    """The ACL file the README's printf line writes, for PASSWORD."""
    readme = (validate.K8S.parent / "README.md").read_text()
    fmt = re.search(r"^printf '(user default .*?)' ", readme, re.M)
    assert fmt, "deploy/README.md no longer shows how to write users.acl"
    return fmt.group(1).replace("\\n", "\n").replace("%s", PASSWORD)


def test_the_documented_users_let_the_services_in_and_the_probe_ping(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (the README's apt-get line installs it)")
    (tmp_path / "users.acl").write_text(_users_acl())
    conf = (validate.K8S / "components" / "redis" / "redis.conf").read_text()
    port = free_port()
    conf = re.sub(r"^(aclfile|dir|port|maxmemory|save|appendonly|bind) .*$", "", conf, flags=re.M)
    conf += f"\naclfile {tmp_path / 'users.acl'}\ndir {tmp_path}\nport {port}\nbind 127.0.0.1\nsave \"\"\n"
    (tmp_path / "redis.conf").write_text(conf)
    (tmp_path / "password").write_text(PASSWORD + "\n")
    server = subprocess.Popen(["redis-server", str(tmp_path / "redis.conf")], stdout=subprocess.DEVNULL)
    try:
        anonymous = redis.Redis(port=port, socket_connect_timeout=1)
        for _ in range(100):
            try:
                assert anonymous.ping()  # the readiness probe: `redis-cli ping`
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        with pytest.raises(redis.exceptions.NoPermissionError):
            anonymous.get("vidsearch:anything")
        service = redis.Redis.from_url(f"redis://vidsearch@127.0.0.1:{port}/0",
                                       password=read_secret(tmp_path / "password"))
        service.xadd("vidsearch:ingest:jobs", {"job_id": "j"})
        assert service.xlen("vidsearch:ingest:jobs") == 1
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(f"redis://vidsearch@127.0.0.1:{port}/0", password="wrong").ping()
    finally:
        server.terminate()
        server.wait(timeout=10)

"""`vidsearch up` runs the stack until Ctrl-C; `vidsearch search` queries it from the terminal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from services.local.processes import ROOT, free_port

# Starts whole process stacks: `make test-fast` leaves it out.
pytestmark = pytest.mark.slow


def test_up_search_and_ctrl_c_stop_everything(tmp_path: Path, tiny_checkpoint: Path) -> None:
    data = tmp_path / "stack"
    gateway_port, ingest_port, web_port = free_port(), free_port(), free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--data-dir", str(data), "--checkpoint", str(tiny_checkpoint),
         "--gateway-port", str(gateway_port), "--ingest-port", str(ingest_port), "--web-port", str(web_port),
         "--replicas", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not (data / "stack.json").exists():
            assert up.poll() is None, up.stdout.read()
            assert time.monotonic() < deadline, "vidsearch up did not come up"
            time.sleep(0.2)
        info = json.loads((data / "stack.json").read_text())
        assert info["gateway"] == f"127.0.0.1:{gateway_port}" and len(info["shards"]) == 2
        assert all(len(shard.split("|")) == 2 for shard in info["shards"])  # two replicas of each
        assert info["web"] == f"http://127.0.0.1:{web_port}/"
        page = tmp_path / "hits.html"
        search = subprocess.run(
            [sys.executable, "-m", "services.cli", "search", "스튜디오에서 전화를 받는 남자", "--gateway",
             info["gateway"], "--html", str(page)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert search.returncode == 0, search.stderr
        assert "스튜디오에서 전화를 받는 남자" in search.stdout and "cache miss" in search.stdout
        assert page.read_text().startswith("<!doctype html>")
        bad = subprocess.run(
            [sys.executable, "-m", "services.cli", "search", "--like", "nobody:000000000", "--gateway",
             info["gateway"]], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "NOT_FOUND" in bad.stderr
        with urllib.request.urlopen(info["web"], timeout=30) as reply:
            assert reply.url.endswith("/search") and b'<script src="/static/search.js"' in reply.read()
        query = urllib.parse.urlencode({"q": "스튜디오에서 전화를 받는 남자", "k": 3})
        with urllib.request.urlopen(f"{info['web']}api/v1/search?{query}", timeout=30) as reply:
            body = json.loads(reply.read())
            assert body["hits"] == [] and body["model_id"]  # the same (empty) archive the CLI searched
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=120)
    assert up.returncode == 0, out
    assert f"Open http://127.0.0.1:{web_port}/ in a browser" in out
    # Every service process (and redis-server) is gone.
    assert len(info["pids"]) == 9  # 2 shards x 2 replicas, encoder, ingest, gateway, web, redis
    for pid in info["pids"]:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} outlived vidsearch up")


def test_a_stack_that_fails_to_start_leaves_no_process_behind(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """The web app cannot bind its port (another program holds it): starting raises with the app's
    error, and every process already started (shards, encoder, gateway) is stopped."""
    from services.local.stack import LocalStack, StackConfig

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack = LocalStack(StackConfig(data_dir=tmp_path / "stack", checkpoint=tiny_checkpoint, n_shards=1,
                                       use_redis=False, web_port=taken.getsockname()[1]))
        with pytest.raises(RuntimeError, match="address already in use"):
            stack.start(timeout_s=120)
    started = [p for p in stack.processes if p.proc is not None]
    assert len(started) >= 3  # shard, encoder, gateway, web
    assert all(p.proc.poll() is not None for p in started), [p.module for p in started if p.proc.poll() is None]


def test_a_new_generation_starts_empty_over_what_a_killed_migration_left(tmp_path: Path,
                                                                          tiny_checkpoint: Path) -> None:
    from services.local.stack import LocalStack, StackConfig

    left = tmp_path / "stack" / "generations" / "g1" / "shard-0"
    left.mkdir(parents=True)
    (left / "clips.sqlite3").write_bytes(b"half a migration")
    with LocalStack(StackConfig(data_dir=tmp_path / "stack", checkpoint=tiny_checkpoint, n_shards=1,
                                use_redis=False)) as stack:
        generation = stack.start_generation("g1", None, 1)
        assert not (left / "clips.sqlite3").exists() or (left / "clips.sqlite3").read_bytes() != b"half a migration"
        assert len(generation.shards) == 1
        stack.stop_generation("g1", remove_data=True)

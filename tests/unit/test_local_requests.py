"""The control channel between commands such as ``vidsearch reshard`` and ``vidsearch up``: request
files in, status files out, one request at a time, failures recorded rather than fatal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.local import requests


@pytest.fixture
def kinds() -> Iterator[dict[str, threading.Event]]:
    """Two request kinds: ``echo`` (answers with its request, after ``release`` is set) and ``boom``."""
    release = threading.Event()

    def echo(stack, request, report):
        report({"phase": "echoing"})
        assert release.wait(10)
        return {"echo": request["word"]}

    def boom(stack, request, report):
        raise RuntimeError("the shards would not start")

    requests.HANDLERS.update(echo=echo, boom=boom)
    try:
        yield {"release": release}
    finally:
        del requests.HANDLERS["echo"], requests.HANDLERS["boom"]


def _inbox(tmp_path: Path) -> requests.RequestInbox:
    return requests.RequestInbox(SimpleNamespace(root=tmp_path))  # type: ignore[arg-type]


def test_requests_run_one_at_a_time_in_order_and_report_their_result(tmp_path: Path, kinds) -> None:
    inbox = _inbox(tmp_path)
    first = requests.submit(tmp_path, "echo", word="one")
    second = requests.submit(tmp_path, "echo", word="two")
    inbox.poll()
    seen: list[dict] = []
    follower = threading.Thread(target=lambda: seen.append(requests.follow(tmp_path, first, lambda s: None,
                                                                           poll_s=0.02)))
    follower.start()
    for _ in range(1000):
        if (requests.read_status(tmp_path, first) or {}).get("progress"):
            break
        threading.Event().wait(0.02)
    inbox.poll()  # busy: the second one waits, marked queued
    assert requests.read_status(tmp_path, first)["progress"] == {"phase": "echoing"}
    assert requests.read_status(tmp_path, second)["state"] == "queued"
    kinds["release"].set()
    follower.join(10)
    assert seen[0]["state"] == "succeeded" and seen[0]["result"] == {"echo": "one"}
    inbox.wait(10)
    inbox.poll()
    inbox.wait(10)
    assert requests.read_status(tmp_path, second)["result"] == {"echo": "two"}


@pytest.mark.parametrize(("kind", "error"), [("boom", "RuntimeError: the shards would not start"),
                                             ("nonsense", "unknown request kind 'nonsense'")])
def test_a_failing_or_unknown_request_is_recorded_as_failed(tmp_path: Path, kinds, kind: str, error: str) -> None:
    request_id = requests.submit(tmp_path, kind)
    status = _inbox(tmp_path).handle(requests.requests_dir(tmp_path) / f"{request_id}.json")
    assert status["state"] == "failed" and status["error"].startswith(error)
    assert requests.read_status(tmp_path, request_id) == status


def test_following_a_request_nobody_picks_up_fails_with_a_hint(tmp_path: Path) -> None:
    request_id = requests.submit(tmp_path, "echo", word="x")
    with pytest.raises(TimeoutError, match="vidsearch up"):
        requests.follow(tmp_path, request_id, lambda s: None, poll_s=0.01, pickup_timeout_s=0.1)

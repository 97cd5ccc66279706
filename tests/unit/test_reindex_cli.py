"""`vidsearch reindex` refusing what it cannot do, before it asks `vidsearch up` anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services import cli
from services.local import requests
from services.local.reindex import migrations_in_flight


def _request(data_dir: Path, kind: str, state: str | None) -> str:
    request_id = requests.submit(data_dir, kind, checkpoint="/models/x")
    if state is not None:
        requests.status_path(data_dir, request_id).write_text(json.dumps({"id": request_id, "state": state}))
    return request_id


def test_a_directory_without_a_model_is_no_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert cli.main(["reindex", "--checkpoint", str(tmp_path / "empty"), "--data-dir", str(tmp_path / "d")]) == 2
    assert "no model at" in capsys.readouterr().out
    assert not requests.requests_dir(tmp_path / "d").exists()


@pytest.mark.parametrize(("kind", "state"), [("reshard", "running"), ("reindex", "queued"), ("reindex", None)])
def test_one_migration_at_a_time(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture,
                                 kind: str, state: str | None) -> None:
    busy = _request(tmp_path, kind, state)
    written = sorted(requests.requests_dir(tmp_path).iterdir())
    assert cli.main(["reindex", "--checkpoint", str(tiny_checkpoint), "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"a migration is already running on {tmp_path}: {busy} ({kind}, {state or 'queued'})" in out
    assert sorted(requests.requests_dir(tmp_path).iterdir()) == written  # nothing new asked of `up`


def test_finished_requests_and_other_kinds_are_not_migrations_in_flight(tmp_path: Path) -> None:
    _request(tmp_path, "reindex", "succeeded")
    _request(tmp_path, "reshard", "failed")
    _request(tmp_path, "something-else", "running")
    assert migrations_in_flight(tmp_path) == []
    running = _request(tmp_path, "reindex", "running")
    assert migrations_in_flight(tmp_path) == [f"{running} (reindex, running)"]


def test_without_a_running_up_the_request_is_withdrawn(tmp_path: Path, tiny_checkpoint: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    follow = requests.follow
    monkeypatch.setattr(requests, "follow", lambda *a, **kw: follow(*a, **kw, poll_s=0.01, pickup_timeout_s=0.2))
    assert cli.main(["reindex", "--checkpoint", str(tiny_checkpoint), "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "no `vidsearch up` picked up request" in out and "request withdrawn" in out
    # A `vidsearch up` started later must not re-index unasked.
    assert list(requests.requests_dir(tmp_path).iterdir()) == []

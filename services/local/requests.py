"""The control channel of ``vidsearch up``: commands such as ``vidsearch reshard`` drop a request file
into ``<data-dir>/requests/``; ``up``, which owns the processes, carries it out and writes its progress
and result next to it (``<id>.status.json``), which the command follows and prints.

Files rather than a socket or an RPC: ``up`` already owns the data directory, a request survives the
command that wrote it being interrupted, and the status file stays as a record of what was done.
Requests run one at a time, in the order written. A kind of request is a handler in ``HANDLERS``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.common.atomic import replacing
from services.local.stack import LocalStack

log = logging.getLogger(__name__)

#: Writes a progress record (a JSON object) for the request being handled.
Report = Callable[[dict[str, Any]], None]
#: Carries out one kind of request on the running stack; returns the result to record.
Handler = Callable[[LocalStack, dict[str, Any], Report], dict[str, Any]]

#: Request kinds (``"kind"`` in the request file) and what carries them out.
HANDLERS: dict[str, Handler] = {}

FINAL_STATES = ("succeeded", "failed")


def requests_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "requests"


def _write_json(path: Path, value: dict[str, Any]) -> None:
    with replacing(path, durable=False) as tmp:
        tmp.write_text(json.dumps(value, indent=2))


def submit(data_dir: Path, kind: str, **fields: Any) -> str:
    """Writes a request for the ``vidsearch up`` running on ``data_dir``; returns its id."""
    folder = requests_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time_ns()  # ids sort in the order written: requests run in that order
    request_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now // 10**9))}-{now % 10**9:09d}-{uuid.uuid4().hex[:6]}"
    _write_json(folder / f"{request_id}.json", {"id": request_id, "kind": kind, **fields})
    return request_id


def status_path(data_dir: Path, request_id: str) -> Path:
    return requests_dir(data_dir) / f"{request_id}.status.json"


def read_status(data_dir: Path, request_id: str) -> dict[str, Any] | None:
    try:
        return json.loads(status_path(data_dir, request_id).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def follow(data_dir: Path, request_id: str, show: Callable[[dict[str, Any]], None], *,
           poll_s: float = 0.5, pickup_timeout_s: float = 30.0) -> dict[str, Any]:
    """Calls ``show`` on each new status until a final one, which it returns.

    Fails when no ``vidsearch up`` picks the request up within ``pickup_timeout_s``.
    """
    deadline = time.monotonic() + pickup_timeout_s
    last: dict[str, Any] | None = None
    while True:
        status = read_status(data_dir, request_id)
        if status is None and time.monotonic() > deadline:
            raise TimeoutError(f"no `vidsearch up` picked up request {request_id} within {pickup_timeout_s:.0f} s "
                               f"(is one running with --data-dir {data_dir}?)")
        if status is not None and status != last:
            show(status)
            last = status
            if status.get("state") in FINAL_STATES:
                return status
        time.sleep(poll_s)


class RequestInbox:
    """``up``'s side: finds new requests and carries them out on a thread, one at a time."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.folder = requests_dir(stack.root)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._worker: threading.Thread | None = None

    def pending(self) -> list[Path]:
        """Requests not started yet (no status, or queued), oldest first."""
        def waiting(path: Path) -> bool:
            status = read_status(self.stack.root, path.stem)
            return status is None or status.get("state") == "queued"
        return sorted(p for p in self.folder.glob("*.json") if not p.name.endswith(".status.json") and waiting(p))

    def poll(self) -> None:
        """Starts the next pending request unless one is running; the others are marked queued."""
        waiting = self.pending()
        busy = self._worker is not None and self._worker.is_alive()
        for path in waiting[0 if busy else 1:]:
            if read_status(self.stack.root, path.stem) is None:
                _write_json(path.with_suffix(".status.json"), {"id": path.stem, "state": "queued"})
        if busy:
            return
        if waiting:
            # Marked before the thread runs, so the next poll cannot take it for a waiting one.
            _write_json(waiting[0].with_suffix(".status.json"), {"id": waiting[0].stem, "state": "running"})
            self._worker = threading.Thread(target=self.handle, args=(waiting[0],), daemon=True,
                                            name=f"request-{waiting[0].stem}")
            self._worker.start()

    def handle(self, path: Path) -> dict[str, Any]:
        """Carries out one request file; returns (and records) its final status."""
        status_file = path.with_suffix(".status.json")
        started = time.time()

        def record(state: str, **fields: Any) -> dict[str, Any]:
            status = {"id": path.stem, "state": state, "started": started, "updated": time.time(), **fields}
            _write_json(status_file, status)
            return status

        try:
            request = json.loads(path.read_text())
            handler = HANDLERS.get(request.get("kind", ""))
            if handler is None:
                return record("failed", error=f"unknown request kind {request.get('kind')!r}; "
                                              f"known: {', '.join(sorted(HANDLERS))}")
            record("running", progress={})
            log.info("request %s: %s", path.stem, request)
            result = handler(self.stack, request, lambda progress: record("running", progress=progress))
            return record("succeeded", result=result)
        except Exception as exc:  # noqa: BLE001 - the request failed; up keeps running
            log.error("request %s failed: %s\n%s", path.stem, exc, traceback.format_exc())
            return record("failed", error=f"{type(exc).__name__}: {exc}")

    def wait(self, timeout_s: float | None = None) -> None:
        if self._worker is not None:
            self._worker.join(timeout_s)

"""The shard's segment manifest (``segments.json``): which sealed segments exist and which store rows
each covers. Replaced atomically and durably; an unreadable one reads as empty, so the shard rebuilds.
"""

from __future__ import annotations

import errno
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from services.common.atomic import write_atomic
from services.common.errors import StorageFull

log = logging.getLogger(__name__)

FILE_NAME = "segments.json"


@dataclass(frozen=True)
class SegmentEntry:
    """One listed segment: its file name stem and the inclusive store seq ranges it covers."""

    name: str
    seq_ranges: list[list[int]]
    n_items: int = 0


def write(directory: Path, model_id: str | None, dim: int | None, segments: list[SegmentEntry]) -> None:
    """Replace the manifest atomically and durably (write, fsync, rename, fsync dir)."""
    path = directory / FILE_NAME
    manifest = {
        "version": 1,
        "model_id": model_id,
        "dim": dim,
        "segments": [{"name": e.name, "seq_ranges": e.seq_ranges, "n_items": e.n_items} for e in segments],
    }
    try:
        write_atomic(path, json.dumps(manifest, indent=1))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StorageFull(f"no space left on device for the segment manifest {path}") from exc
        raise


def read(directory: Path) -> list[SegmentEntry]:
    """The listed segments; none when the manifest is missing or unreadable (logged)."""
    path = directory / FILE_NAME
    try:
        manifest = json.loads(path.read_text())
        return [
            SegmentEntry(str(e["name"]), [[int(lo), int(hi)] for lo, hi in e["seq_ranges"]],
                         int(e.get("n_items", 0)))
            for e in manifest["segments"]
        ]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("segment manifest %s is unreadable (%s); rebuilding the index from the store", path, exc)
        return []

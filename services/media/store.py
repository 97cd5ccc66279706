"""The media store: thumbnails and uploaded videos under one root directory, by key.

Keys are relative POSIX paths such as ``thumbs/<video_id>/<start ms>.jpg``; the store refuses
keys that would escape its root. Writes are atomic (temp file + rename) so a reader never sees
a half-written file. In Kubernetes the root is a shared volume mounted by ingest and gateway.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from services.common.atomic import write_atomic
from services.common.errors import InvalidInput, NotFound


class MediaStore:
    """Files by key under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        pure = PurePosixPath(key)
        if not key or pure.is_absolute() or ".." in pure.parts or "\\" in key or "\0" in key:
            raise InvalidInput(f"invalid media key {key!r}")
        return self.root.joinpath(*pure.parts)

    def put(self, key: str, data: bytes) -> str:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)
        return key

    def get(self, key: str) -> bytes:
        target = self.path(key)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no media stored under {key!r}") from None

    def delete_prefix(self, prefix: str) -> int:
        """Removes every file under a key prefix (e.g. ``thumbs/<video_id>``); returns the count."""
        base = self.path(prefix)
        if not base.exists():
            return 0
        files = [p for p in base.rglob("*") if p.is_file()] if base.is_dir() else [base]
        for p in files:
            p.unlink(missing_ok=True)
        return len(files)


#: A job's source that names an upload kept in the media store: ``media:<key>``.
MEDIA_SCHEME = "media:"


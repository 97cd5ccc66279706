"""Durable storage of a shard's clip records in SQLite, the source of truth every index is rebuilt from.

The database runs in WAL mode with ``synchronous=FULL``: once ``upsert`` or ``delete`` returns, the
change has been fsynced and survives a SIGKILL or power loss. Each write gives the rows it touches
a new, strictly increasing sequence number, which lets an index segment record the rows it covers.

Each vector is kept once on disk. A written vector lands in the ``vectors`` table; once a sealed
segment holding it is durably listed, the shard calls ``release_vectors`` and the segment's vector
file becomes its only copy (``restore_vectors`` takes it back if that segment is ever unusable).
Records read with vectors carry ``vector=None`` for released rows. Schema 1 kept the vector inside
``clips``; such a store is migrated to schema 2 when opened.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from services.common.errors import InvalidInput, NotFound, StorageFull, WrongState
from services.index.records import ClipRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    clip_id       TEXT PRIMARY KEY,
    seq           INTEGER NOT NULL UNIQUE,
    video_id      TEXT NOT NULL,
    start_s       REAL NOT NULL,
    end_s         REAL NOT NULL,
    caption       TEXT NOT NULL,
    tags          TEXT NOT NULL,   -- JSON array
    thumbnail_ref TEXT NOT NULL,
    model_id      TEXT NOT NULL,
    metadata      TEXT NOT NULL    -- JSON object
);
CREATE INDEX IF NOT EXISTS clips_video ON clips (video_id);
-- Vectors not (yet) held by a sealed segment, by the seq of the clips row they belong to.
CREATE TABLE IF NOT EXISTS vectors (
    seq    INTEGER PRIMARY KEY,
    vector BLOB NOT NULL           -- little-endian float32, dim values
);
-- Writers (ingest job ids) a delete fenced: their later upserts are refused (see ``upsert``).
CREATE TABLE IF NOT EXISTS fences (
    writer    TEXT PRIMARY KEY,
    fenced_at REAL NOT NULL        -- unix seconds (rows older than FENCE_KEEP_S are dropped at open)
);
"""

_SCHEMA_VERSION = 2
_FIELDS = ("clip_id", "seq", "video_id", "start_s", "end_s", "caption", "tags", "thumbnail_ref", "model_id",
           "metadata")
_COLUMNS = ", ".join(f"c.{f}" for f in _FIELDS)
_FROM = "clips AS c LEFT JOIN vectors AS v ON v.seq = c.seq"
# Keep the WAL file from staying at its high-water mark after a bulk write.
_WAL_LIMIT_BYTES = 64 * 1024 * 1024
# SQLite's default limit on bound parameters is 32766 (>= 3.32); stay far below it.
_IN_CHUNK = 500
#: How long a fence is kept. A write it refuses was sent before the delete and is bounded by its
#: caller's gRPC deadline (minutes), so a week is ample; the table stays small.
FENCE_KEEP_S = 7 * 24 * 3600


@contextlib.contextmanager
def _storage_errors(path: Path) -> Iterator[None]:
    """Turn a full disk (or exhausted quota) into StorageFull; everything else propagates."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "database or disk is full" in str(exc):
            raise StorageFull(f"shard store {path} is full: nothing was written ({exc})") from exc
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StorageFull(f"no space left on device for shard store {path}") from exc
        raise


class ShardStore:
    """Clip records of one shard, bound to one embedding model and dimension.

    One writer connection serialised by a lock; each reading thread gets its own connection, so
    reads never wait for a write in progress (WAL readers see the last committed state).
    """

    def __init__(self, path: Path, model_id: str, dim: int, writer: sqlite3.Connection) -> None:
        self._path = path
        self._model_id = model_id
        self._dim = dim
        self._writer = writer
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        # Guards the reader list and the count of reads under way; close() waits on _idle for none.
        self._readers_lock = threading.Lock()
        self._idle = threading.Condition(self._readers_lock)
        self._active = 0
        self._closed = False

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike[str], model_id: str, dim: int, *, max_bytes: int | None = None
             ) -> ShardStore:
        """Open (creating if needed) the store at ``path``, bound to ``(model_id, dim)``.

        The first open records the binding; a later open with another model id or dimension raises
        WrongState naming both. ``max_bytes`` caps the database size (a per-shard disk quota); a
        write that would exceed it raises StorageFull.
        """
        if not model_id:
            raise InvalidInput("model_id must be non-empty")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise InvalidInput(f"dim must be a positive integer, got {dim!r}")
        path = Path(path)
        with _storage_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            # The writer is shared by every writing thread, serialised by the write lock.
            conn = _connect(path, check_same_thread=False)
            try:
                _migrate_v1(conn, path)
                conn.executescript(_SCHEMA)
                bound = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if not bound:
                    with conn:
                        conn.executemany(
                            "INSERT INTO meta (key, value) VALUES (?, ?)",
                            [("model_id", model_id), ("dim", str(dim)), ("last_seq", "0"),
                             ("schema", str(_SCHEMA_VERSION))],
                        )
                elif bound["model_id"] != model_id or int(bound["dim"]) != dim:
                    raise WrongState(
                        f"shard store {path} holds model {bound['model_id']!r} with dim {bound['dim']}; "
                        f"opened for model {model_id!r} with dim {dim}"
                    )
                with conn:
                    conn.execute("DELETE FROM fences WHERE fenced_at < ?", (time.time() - FENCE_KEEP_S,))
                if max_bytes is not None:
                    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                    conn.execute(f"PRAGMA max_page_count = {max(1, int(max_bytes) // page_size)}")
            except BaseException:
                conn.close()
                raise
        return cls(path, model_id, dim, conn)

    @staticmethod
    def read_binding(path: str | os.PathLike[str]) -> tuple[str, int] | None:
        """The ``(model_id, dim)`` a store at ``path`` is bound to, or None if there is no store yet."""
        path = Path(path)
        if not path.exists():
            return None
        conn = _connect(path)
        try:
            has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
            bound = dict(conn.execute("SELECT key, value FROM meta").fetchall()) if has_meta else {}
        finally:
            conn.close()
        if "model_id" not in bound:
            return None
        return bound["model_id"], int(bound["dim"])

    @property
    def path(self) -> Path:
        return self._path

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    # ------------------------------------------------------------------ writes

    def upsert(self, records: Sequence[ClipRecord], writer: str = "") -> list[int]:
        """Insert or overwrite records by clip id in one durable transaction.

        Expects records already checked by ``validate_records``. Returns the sequence number given
        to each record, in order. Nothing is written if any part fails, nor when ``writer`` was fenced
        by a delete (WrongState): checked in the same transaction, so a fence and a write never race.
        """
        rows = []
        for record in records:
            vector = record.vector
            if vector is None or vector.shape != (self._dim,):
                shape = None if vector is None else vector.shape
                raise InvalidInput(
                    f"vector for clip {record.clip_id!r} has shape {shape}, shard expects ({self._dim},)"
                )
            rows.append(record)
        if not rows:
            return []
        self._check_open()
        with self._write_lock, _storage_errors(self._path), self._writer:
            if writer and self._writer.execute("SELECT 1 FROM fences WHERE writer = ?", (writer,)).fetchone():
                raise WrongState(f"writer {writer!r} was fenced by a delete of the video it writes (the job was "
                                 "cancelled): its clips are not written")
            last = self._last_seq(self._writer)
            seqs = list(range(last + 1, last + 1 + len(rows)))
            self._drop_vectors_of([r.clip_id for r in rows])
            self._writer.executemany(
                "INSERT INTO vectors (seq, vector) VALUES (?, ?)",
                ((seq, np.ascontiguousarray(r.vector, dtype="<f4").tobytes())
                 for r, seq in zip(rows, seqs, strict=True)),
            )
            self._writer.executemany(
                "INSERT INTO clips (clip_id, seq, video_id, start_s, end_s, caption, tags, thumbnail_ref,"
                " model_id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (clip_id) DO UPDATE SET seq = excluded.seq, video_id = excluded.video_id,"
                " start_s = excluded.start_s, end_s = excluded.end_s, caption = excluded.caption,"
                " tags = excluded.tags, thumbnail_ref = excluded.thumbnail_ref,"
                " model_id = excluded.model_id, metadata = excluded.metadata",
                (
                    (
                        r.clip_id,
                        seq,
                        r.video_id,
                        float(r.start_s),
                        float(r.end_s),
                        r.caption,
                        json.dumps(list(r.tags)),
                        r.thumbnail_ref,
                        r.model_id or self._model_id,
                        json.dumps(dict(r.metadata), sort_keys=True),
                    )
                    for r, seq in zip(rows, seqs, strict=True)
                ),
            )
            self._writer.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (str(seqs[-1]),))
        return seqs

    def delete(self, clip_ids: Iterable[str], fence_writers: Iterable[str] = ()) -> int:
        """Delete the named clips durably; unknown ids are ignored. Returns how many were deleted.

        ``fence_writers`` are fenced in the same transaction: ``upsert`` refuses them from then on.
        """
        ids = list(dict.fromkeys(clip_ids))
        fences = list(dict.fromkeys(w for w in fence_writers if w))
        if not ids and not fences:
            return 0
        self._check_open()
        deleted = 0
        with self._write_lock, _storage_errors(self._path), self._writer:
            now = time.time()
            self._writer.executemany("INSERT OR REPLACE INTO fences (writer, fenced_at) VALUES (?, ?)",
                                     ((w, now) for w in fences))
            self._drop_vectors_of(ids)
            for chunk in _chunks(ids, _IN_CHUNK):
                marks = ",".join("?" * len(chunk))
                cursor = self._writer.execute(f"DELETE FROM clips WHERE clip_id IN ({marks})", chunk)
                deleted += cursor.rowcount
        return deleted

    def release_vectors(self, seq_ranges: Iterable[Sequence[int]]) -> int:
        """Drop the stored vectors of rows with seq in the inclusive ``seq_ranges``.

        Called once a sealed segment holding exactly the live rows of those ranges is durably
        listed: its vector file is then their one copy. Returns how many vectors were dropped; the
        freed pages go back to the file system.
        """
        self._check_open()
        dropped = 0
        with self._write_lock, _storage_errors(self._path):
            with self._writer:
                for lo, hi in seq_ranges:
                    dropped += self._writer.execute(
                        "DELETE FROM vectors WHERE seq BETWEEN ? AND ?", (int(lo), int(hi))).rowcount
            if dropped:
                # executescript steps the pragma to completion; execute() would free one page.
                self._writer.executescript("PRAGMA incremental_vacuum;")
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return dropped

    def restore_vectors(self, seqs: Sequence[int], vectors: np.ndarray) -> int:
        """Store again the vectors of live rows (by seq) whose segment became unusable.

        Rows whose seq is no longer live are skipped. Returns how many vectors were stored.
        """
        self._check_open()
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if vectors.shape != (len(seqs), self._dim):
            raise InvalidInput(f"restore_vectors needs [{len(seqs)}, {self._dim}] vectors, got {vectors.shape}")
        with self._write_lock, _storage_errors(self._path), self._writer:
            cursor = self._writer.executemany(
                "INSERT OR REPLACE INTO vectors (seq, vector) SELECT ?, ? WHERE EXISTS"
                " (SELECT 1 FROM clips WHERE seq = ?)",
                ((int(seq), vectors[i].tobytes(), int(seq)) for i, seq in enumerate(seqs)),
            )
            return cursor.rowcount
    # ------------------------------------------------------------------ reads

    def get(self, clip_ids: Iterable[str], *, with_vectors: bool = True) -> list[ClipRecord]:
        """The records of the named clips that exist, in request order (unknown ids are skipped).

        A record whose vector was released to a segment has ``vector=None``.
        """
        ids = list(dict.fromkeys(clip_ids))
        found: dict[str, ClipRecord] = {}
        columns, source = (_COLUMNS + ", v.vector", _FROM) if with_vectors else (_COLUMNS, "clips AS c")
        with self._reading() as conn:
            for chunk in _chunks(ids, _IN_CHUNK):
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(f"SELECT {columns} FROM {source} WHERE c.clip_id IN ({marks})", chunk):
                    found[row[0]] = self._record(row)
        return [found[cid] for cid in ids if cid in found]

    def iter_records(
        self, after_seq: int = 0, *, with_vectors: bool = True, batch_size: int = 2048
    ) -> Iterator[tuple[int, ClipRecord]]:
        """Yield ``(seq, record)`` for every row with ``seq > after_seq`` in seq order.

        Rows are fetched ``batch_size`` at a time by seq ranges, so memory stays bounded and no
        read transaction is held open between batches (writes may proceed meanwhile).
        """
        columns, source = (_COLUMNS + ", v.vector", _FROM) if with_vectors else (_COLUMNS, "clips AS c")
        cursor_seq = after_seq
        while True:
            with self._reading() as conn:
                rows = conn.execute(
                    f"SELECT {columns} FROM {source} WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
                    (cursor_seq, batch_size)).fetchall()
            for row in rows:
                yield row[1], self._record(row)
            if len(rows) < batch_size:
                return
            cursor_seq = rows[-1][1]

    def page(self, after_clip_id: str = "", limit: int = 1000, *, video_ids: Sequence[str] = (),
             with_vectors: bool = True) -> list[ClipRecord]:
        """Up to ``limit`` records with ``clip_id > after_clip_id``, in clip-id order.

        Clip ids compare as SQLite compares text (byte order of UTF-8, the primary key's order), so
        a caller pages through every record by passing the last id it got; rows written meanwhile
        after that id are seen, rows before it are not. ``video_ids`` restricts to those videos.
        """
        columns, source = (_COLUMNS + ", v.vector", _FROM) if with_vectors else (_COLUMNS, "clips AS c")
        where, params = "c.clip_id > ?", [after_clip_id]
        if video_ids:
            videos = list(dict.fromkeys(video_ids))
            if len(videos) > _IN_CHUNK:
                raise InvalidInput(f"at most {_IN_CHUNK} video ids per page, got {len(videos)}")
            where += f" AND c.video_id IN ({','.join('?' * len(videos))})"
            params += videos
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {columns} FROM {source} WHERE {where} ORDER BY c.clip_id LIMIT ?", (*params, limit))
            return [self._record(row) for row in rows]

    def vectors_for(self, clip_ids: Sequence[str]) -> np.ndarray:
        """Float32 matrix ``[len(clip_ids), dim]`` of the named clips' stored vectors, in order.

        Raises NotFound when a clip is unknown or its vector was released to a segment.
        """
        ids = list(clip_ids)
        blobs = self.held_vectors(ids)
        missing = [cid for cid in ids if cid not in blobs]
        if missing:
            raise NotFound(f"{len(missing)} clip(s) without a stored vector, e.g. {missing[:5]}")
        if not ids:
            return np.zeros((0, self._dim), dtype=np.float32)
        flat = np.frombuffer(b"".join(blobs[cid] for cid in ids), dtype="<f4")
        return flat.reshape(len(ids), self._dim).astype(np.float32, copy=True)

    def held_vectors(self, clip_ids: Sequence[str]) -> dict[str, bytes]:
        """Raw little-endian float32 vectors of those named clips whose vector the store holds."""
        blobs: dict[str, bytes] = {}
        with self._reading() as conn:
            for chunk in _chunks(list(dict.fromkeys(clip_ids)), _IN_CHUNK):
                marks = ",".join("?" * len(chunk))
                blobs.update(conn.execute(
                    f"SELECT c.clip_id, v.vector FROM clips AS c JOIN vectors AS v ON v.seq = c.seq"
                    f" WHERE c.clip_id IN ({marks})", chunk))
        return blobs

    def held_vector_count(self) -> int:
        """How many vectors the store holds itself (rows not released to a segment)."""
        with self._reading() as conn:
            return conn.execute("SELECT count(*) FROM vectors").fetchone()[0]

    def fenced(self) -> set[str]:
        """The writers fenced now (kept for FENCE_KEEP_S)."""
        with self._reading() as conn:
            return {row[0] for row in conn.execute("SELECT writer FROM fences")}

    def count(self) -> int:
        with self._reading() as conn:
            return conn.execute("SELECT count(*) FROM clips").fetchone()[0]

    def last_seq(self) -> int:
        """The sequence number of the latest write (0 for a new shard)."""
        with self._reading() as conn:
            return self._last_seq(conn)

    def bytes_on_disk(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(f"{self._path}{suffix}").st_size
        return total

    def close(self, wait_s: float = 10.0) -> None:
        """Refuses new reads, lets reads under way in other threads finish (interrupting any still
        running after ``wait_s``: a connection closed under a running query crashes the process),
        then closes every connection."""
        with self._readers_lock:
            if self._closed:
                return
            self._closed = True
            if not self._idle.wait_for(lambda: self._active == 0, timeout=wait_s):
                for conn in self._readers:
                    conn.interrupt()
                self._idle.wait_for(lambda: self._active == 0, timeout=wait_s)
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        with self._write_lock:
            self._writer.close()

    def __enter__(self) -> ShardStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise WrongState(f"shard store {self._path} is closed")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """This thread's reader connection, counted as in use until the block ends (see ``close``)."""
        with self._readers_lock:
            self._check_open()
            self._active += 1
        try:
            yield self._reader()
        finally:
            with self._readers_lock:
                self._active -= 1
                self._idle.notify_all()

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so close() may close it from another thread;
            # each reader connection is used by the one thread that created it.
            conn = _connect(self._path, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _drop_vectors_of(self, clip_ids: list[str]) -> None:
        """Delete the stored vectors of the named clips' current rows (caller holds the write txn)."""
        for chunk in _chunks(clip_ids, _IN_CHUNK):
            marks = ",".join("?" * len(chunk))
            self._writer.execute(
                f"DELETE FROM vectors WHERE seq IN (SELECT seq FROM clips WHERE clip_id IN ({marks}))", chunk)

    @staticmethod
    def _last_seq(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0])

    def _record(self, row: tuple) -> ClipRecord:
        vector = None
        if len(row) > 10 and row[10] is not None:
            vector = np.frombuffer(row[10], dtype="<f4").astype(np.float32)
        return ClipRecord(
            clip_id=row[0],
            video_id=row[2],
            start_s=row[3],
            end_s=row[4],
            vector=vector,
            caption=row[5],
            tags=tuple(json.loads(row[6])),
            thumbnail_ref=row[7],
            model_id=row[8],
            metadata=json.loads(row[9]),
        )


_AUTO_VACUUM_INCREMENTAL = 2  # PRAGMA auto_vacuum: 0 none, 1 full, 2 incremental


def _connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=check_same_thread)
    # Takes effect only on a new database, before WAL mode writes its header (or at a VACUUM):
    # released vectors give their pages back to the file system instead of staying on the free list.
    # Set only when not already set: the pragma writes a WAL frame even when it changes nothing, so
    # every new reader connection would otherwise write to the store.
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != _AUTO_VACUUM_INCREMENTAL:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL fsyncs the WAL at every commit: an acknowledged write survives SIGKILL and power loss.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT_BYTES}")
    return conn


def _migrate_v1(conn: sqlite3.Connection, path: Path) -> None:
    """Move a schema-1 store's vectors out of ``clips`` into ``vectors``, then compact the file.

    One transaction: a crash leaves either the old schema (migrated again on the next open) or
    the new one. The VACUUM afterwards also turns on incremental auto-vacuum for this file.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(clips)")}
    if "vector" not in columns:
        return
    fields = ", ".join(_FIELDS)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE clips RENAME TO clips_v1")
        conn.execute("DROP INDEX IF EXISTS clips_video")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"INSERT INTO clips ({fields}) SELECT {fields} FROM clips_v1")
        conn.execute("INSERT INTO vectors (seq, vector) SELECT seq, vector FROM clips_v1")
        conn.execute("DROP TABLE clips_v1")
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(_SCHEMA_VERSION),))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    logging.getLogger(__name__).info("migrated shard store %s to schema %d", path, _SCHEMA_VERSION)


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

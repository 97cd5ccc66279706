"""ShardStore: durable, model-bound clip records in SQLite."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import InvalidInput, NotFound, StorageFull, WrongState
from services.index.records import ClipRecord, validate_records
from services.index.store import ShardStore

DIM = 8
MODEL = "clip4clip-test"
REPO = Path(__file__).resolve().parents[2]


def record(i: int, dim: int = DIM, **kw) -> ClipRecord:
    rng = np.random.default_rng(i)
    fields = {
        "clip_id": f"v{i // 10}:{i:06d}",
        "video_id": f"v{i // 10}",
        "start_s": float(i),
        "end_s": float(i) + 2.5,
        "vector": rng.normal(size=dim).astype(np.float32),
        "caption": f"caption {i}",
        "tags": ("news", f"t{i % 3}"),
        "thumbnail_ref": f"thumbs/{i}.jpg",
        "metadata": {"title": f"title {i}", "air_date": "2001-09-11"},
    }
    fields.update(kw)
    (clean,) = validate_records([ClipRecord(**fields)], dim, MODEL)
    return clean


@pytest.fixture
def store(tmp_path: Path):
    s = ShardStore.open(tmp_path / "clips.sqlite3", MODEL, DIM)
    yield s
    s.close()


def test_records_round_trip_with_every_field(store: ShardStore) -> None:
    written = [record(i) for i in range(5)]
    store.upsert(written)
    got = store.get([r.clip_id for r in reversed(written)])
    assert got == list(reversed(written))
    assert got[0].model_id == MODEL
    assert dict(got[0].metadata) == {"title": "title 4", "air_date": "2001-09-11"}
    no_vec = store.get([written[0].clip_id], with_vectors=False)[0]
    assert no_vec.vector is None and no_vec.caption == "caption 0"


def test_get_skips_unknown_ids_and_keeps_request_order(store: ShardStore) -> None:
    store.upsert([record(1), record(2)])
    ids = [record(2).clip_id, "nope", record(1).clip_id]
    assert [r.clip_id for r in store.get(ids)] == [ids[0], ids[2]]


def test_acknowledged_writes_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "clips.sqlite3"
    with ShardStore.open(path, MODEL, DIM) as s:
        s.upsert([record(i) for i in range(50)])
        s.delete([record(3).clip_id])
    with ShardStore.open(path, MODEL, DIM) as s:
        assert s.count() == 49
        assert s.get([record(7).clip_id]) == [record(7)]
        assert s.get([record(3).clip_id]) == []


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    """A child upserts in a loop and reports each acknowledged batch; SIGKILL it mid-stream."""
    path = tmp_path / "clips.sqlite3"
    child = textwrap.dedent(
        f"""
        import sys, numpy as np
        from services.index.records import ClipRecord
        from services.index.store import ShardStore
        s = ShardStore.open({str(path)!r}, {MODEL!r}, {DIM})
        batch = 0
        while True:
            recs = [ClipRecord(f"c{{batch}}-{{j}}", "v", 0.0, 1.0,
                               np.full({DIM}, batch + 1, np.float32), model_id={MODEL!r}) for j in range(20)]
            s.upsert(recs)
            print(batch, flush=True)
            batch += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    acked = -1
    try:
        while acked < 30:
            line = proc.stdout.readline()
            assert line, "child exited before acknowledging 30 batches"
            acked = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    with ShardStore.open(path, MODEL, DIM) as s:
        ids = [f"c{b}-{j}" for b in range(acked + 1) for j in range(20)]
        got = s.vectors_for(ids)  # raises NotFound if any acknowledged clip was lost
        assert got[-1][0] == acked + 1


def test_binding_to_model_and_dim_is_enforced(tmp_path: Path) -> None:
    path = tmp_path / "clips.sqlite3"
    ShardStore.open(path, MODEL, DIM).close()
    assert ShardStore.read_binding(path) == (MODEL, DIM)
    with pytest.raises(WrongState, match=r"'clip4clip-test'.*'other-model'"):
        ShardStore.open(path, "other-model", DIM)
    with pytest.raises(WrongState, match=r"dim 8.*dim 16"):
        ShardStore.open(path, MODEL, 16)
    assert ShardStore.read_binding(tmp_path / "absent.sqlite3") is None


@pytest.mark.parametrize(("model_id", "dim"), [("", 8), (MODEL, 0), (MODEL, -3), (MODEL, True)])
def test_open_rejects_bad_binding(tmp_path: Path, model_id: str, dim: int) -> None:
    with pytest.raises(InvalidInput):
        ShardStore.open(tmp_path / "x.sqlite3", model_id, dim)


def test_overwrite_replaces_row_with_new_sequence_number(store: ShardStore) -> None:
    first = store.upsert([record(1), record(2)])
    assert first == [1, 2]
    changed = record(1, caption="new caption", vector=np.ones(DIM, np.float32))
    (seq,) = store.upsert([changed])
    assert seq == 3 and store.count() == 2 and store.last_seq() == 3
    assert store.get([changed.clip_id]) == [changed]
    assert [(s, r.clip_id) for s, r in store.iter_records(after_seq=2)] == [(3, changed.clip_id)]


def test_sequence_numbers_never_reused_after_delete(store: ShardStore) -> None:
    store.upsert([record(1), record(2)])
    store.delete([record(2).clip_id])
    assert store.upsert([record(3)]) == [3]


def test_delete_counts_only_existing_clips(store: ShardStore) -> None:
    store.upsert([record(i) for i in range(4)])
    assert store.delete([record(0).clip_id, "missing", record(0).clip_id, record(3).clip_id]) == 2
    assert store.delete([]) == 0
    assert store.count() == 2


def test_a_fenced_writer_writes_nothing_and_others_still_write(tmp_path: Path) -> None:
    path = tmp_path / "clips.sqlite3"
    with ShardStore.open(path, MODEL, DIM) as store:
        store.upsert([record(1)], writer="job-a")
        assert store.delete([record(1).clip_id], fence_writers=["job-a", ""]) == 1
        with pytest.raises(WrongState, match="'job-a' was fenced"):
            store.upsert([record(1), record(2)], writer="job-a")
        assert store.count() == 0 and store.last_seq() == 1  # nothing of the refused write
        assert store.upsert([record(2)], writer="job-b") == [2]
        assert store.upsert([record(3)]) == [3]  # no writer named: never fenced
        assert store.delete([], fence_writers=["job-c"]) == 0
        assert store.fenced() == {"job-a", "job-c"}
    with ShardStore.open(path, MODEL, DIM) as store, pytest.raises(WrongState):  # durable
        store.upsert([record(4)], writer="job-c")


def test_fences_are_dropped_after_a_week(tmp_path: Path) -> None:
    path = tmp_path / "clips.sqlite3"
    with ShardStore.open(path, MODEL, DIM) as store:
        store.delete([], fence_writers=["old-job", "new-job"])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE fences SET fenced_at = fenced_at - 8 * 24 * 3600 WHERE writer = 'old-job'")
    conn.close()
    with ShardStore.open(path, MODEL, DIM) as store:
        assert store.fenced() == {"new-job"}
        assert store.upsert([record(1)], writer="old-job") == [1]


def test_iter_records_streams_everything_in_seq_order(store: ShardStore) -> None:
    for i in range(10):
        store.upsert([record(i)])
    seen = [(seq, r.clip_id) for seq, r in store.iter_records(batch_size=3)]
    assert seen == [(i + 1, record(i).clip_id) for i in range(10)]
    assert [seq for seq, _ in store.iter_records(after_seq=7, batch_size=3)] == [8, 9, 10]
    no_vec = list(store.iter_records(with_vectors=False))
    assert all(r.vector is None for _, r in no_vec)


def test_vectors_for_keeps_order_and_reports_missing(store: ShardStore) -> None:
    recs = [record(i) for i in range(3)]
    store.upsert(recs)
    got = store.vectors_for([recs[2].clip_id, recs[0].clip_id])
    np.testing.assert_array_equal(got, np.stack([recs[2].vector, recs[0].vector]))
    assert got.dtype == np.float32
    with pytest.raises(NotFound, match="nope"):
        store.vectors_for([recs[0].clip_id, "nope"])


def test_upsert_rejects_wrong_dimension(store: ShardStore) -> None:
    bad = ClipRecord("c", "v", 0.0, 1.0, np.ones(DIM + 1, np.float32))
    with pytest.raises(InvalidInput, match=r"clip 'c'.*\(8,\)"):
        store.upsert([bad])
    assert store.count() == 0


def test_full_disk_raises_storage_full_and_writes_nothing(tmp_path: Path) -> None:
    with ShardStore.open(tmp_path / "q.sqlite3", MODEL, 256, max_bytes=256 * 1024) as s:
        s.upsert([record(0, dim=256)])
        big = [record(i, dim=256) for i in range(1, 400)]  # ~400 KiB of vectors
        with pytest.raises(StorageFull, match="full"):
            s.upsert(big)
        assert s.count() == 1
        assert s.last_seq() == 1
        s.upsert([record(1, dim=256)])  # the store is still usable
        assert s.count() == 2


def test_concurrent_writers_and_readers(store: ShardStore) -> None:
    def write(t: int) -> list[int]:
        batches = [[record(t * 1000 + b * 10 + j) for j in range(10)] for b in range(10)]
        return [seq for batch in batches for seq in store.upsert(batch)]

    def read() -> None:
        for _ in range(50):
            assert store.count() <= 400
            list(store.iter_records(batch_size=7))

    with ThreadPoolExecutor(max_workers=6) as pool:
        writers = [pool.submit(write, t) for t in range(4)]
        readers = [pool.submit(read) for _ in range(2)]
        seqs = [seq for f in writers for seq in f.result()]  # .result() re-raises a thread's error
        for f in readers:
            f.result()
    assert store.count() == 400
    assert sorted(seqs) == list(range(1, 401))


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    s = ShardStore.open(tmp_path / "c.sqlite3", MODEL, DIM)
    assert s.bytes_on_disk() > 0
    s.close()
    s.close()
    with pytest.raises(WrongState, match="closed"):
        s.upsert([record(1)])


# ---------------------------------------------------------------------------- one copy of each vector


def test_released_vectors_leave_the_store_and_can_come_back(tmp_path: Path) -> None:
    path = tmp_path / "clips.sqlite3"
    written = [record(i, dim=256) for i in range(1, 401)]
    with ShardStore.open(path, MODEL, 256) as s:
        seqs = s.upsert(written)
        full = s.bytes_on_disk()
        assert s.release_vectors([[seqs[0], seqs[299]]]) == 300
        # The freed pages go back to the file system, not to SQLite's free list.
        assert s.bytes_on_disk() < full / 2
        assert s.held_vector_count() == 100
        got = s.get([written[0].clip_id, written[350].clip_id])
        assert got[0].vector is None and got[0].caption == written[0].caption
        assert got[1] == written[350]
        with pytest.raises(NotFound):
            s.vectors_for([written[0].clip_id])
        assert set(s.held_vectors([written[0].clip_id, written[350].clip_id])) == {written[350].clip_id}
        # Overwriting a released row stores its new vector; deleting a row drops its vector.
        moved = record(1, dim=256, caption="moved")
        s.upsert([moved])
        assert s.get([moved.clip_id]) == [moved]
        s.delete([written[350].clip_id])
        assert s.held_vector_count() == 100
        # Only live seqs are restored: seq 1 was overwritten (it has a new seq now).
        vectors = np.stack([r.vector for r in written[:3]])
        assert s.restore_vectors(seqs[:3], vectors) == 2
    with ShardStore.open(path, MODEL, 256) as s:
        assert s.get([written[2].clip_id]) == [written[2]]
        assert s.held_vector_count() == 102


_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE clips (
    clip_id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, video_id TEXT NOT NULL, start_s REAL NOT NULL,
    end_s REAL NOT NULL, caption TEXT NOT NULL, tags TEXT NOT NULL, thumbnail_ref TEXT NOT NULL,
    model_id TEXT NOT NULL, metadata TEXT NOT NULL, vector BLOB NOT NULL
);
CREATE INDEX clips_video ON clips (video_id);
"""


def write_v1_store(path: Path, records: list[ClipRecord], dim: int) -> None:
    """A store as schema 1 wrote it: the vector inside each clips row."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(_SCHEMA_V1)
    conn.executemany("INSERT INTO meta VALUES (?, ?)",
                     [("model_id", MODEL), ("dim", str(dim)), ("last_seq", str(len(records)))])
    conn.executemany("INSERT INTO clips VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        (r.clip_id, seq, r.video_id, r.start_s, r.end_s, r.caption, json.dumps(list(r.tags)),
         r.thumbnail_ref, MODEL, json.dumps(dict(r.metadata), sort_keys=True), r.vector.astype("<f4").tobytes())
        for seq, r in enumerate(records, 1)])
    conn.commit()
    conn.close()


def test_schema_1_store_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "clips.sqlite3"
    written = [record(i) for i in range(1, 60)]
    write_v1_store(path, written, DIM)
    with ShardStore.open(path, MODEL, DIM) as s:
        assert s.get([r.clip_id for r in written]) == written
        assert s.held_vector_count() == 59 and s.last_seq() == 59
        assert s.upsert([record(100)]) == [60]
        assert s.release_vectors([[1, 30]]) == 30
    with ShardStore.open(path, MODEL, DIM) as s:  # a second open finds schema 2 and changes nothing
        assert s.count() == 60 and s.held_vector_count() == 30
        assert s.get([written[40].clip_id]) == [written[40]]


def test_reading_writes_nothing_to_the_store(tmp_path) -> None:
    """A new reader connection (each thread gets one) must not touch the files: backups and the
    bad-input suite compare them byte for byte."""
    import threading

    from services.index.records import ClipRecord
    from services.index.shard import ShardIndex

    vectors = np.eye(4, 8, dtype=np.float32)
    with ShardIndex(tmp_path, model_id="m", dim=8) as shard:
        shard.upsert([ClipRecord(f"v:{i:09d}", "v", i, i + 1, vectors[i], model_id="m") for i in range(4)])
        before = {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.is_file()}
        reader = threading.Thread(target=shard.get, args=([f"v:{i:09d}" for i in range(4)],))
        reader.start()
        reader.join()
        assert {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.is_file()} == before


def test_close_waits_for_a_read_under_way_in_another_thread(store: ShardStore) -> None:
    """Closing a connection under a running query crashes the process (a shard stopping while a
    Scan page or a catch-up read is still in its worker thread): close lets the read finish."""
    store.upsert([record(i) for i in range(20)])
    reading, release = threading.Event(), threading.Event()

    def read() -> int:
        with store._reading() as conn:
            reading.set()
            release.wait(10)
            return conn.execute("SELECT count(*) FROM clips").fetchone()[0]

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(read)
        assert reading.wait(10)
        closer = threading.Thread(target=store.close)
        closer.start()
        closer.join(0.3)
        assert closer.is_alive(), "close did not wait for the read under way"
        with pytest.raises(WrongState, match="closed"):
            store.count()  # no new read starts meanwhile
        release.set()
        assert pending.result(10) == 20
        closer.join(10)
        assert not closer.is_alive()

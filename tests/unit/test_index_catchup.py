"""Which replica serves first when a whole shard restarts and no replica is SERVING; how a replica cuts
its clip ids into the ranges it compares with its peer's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.index import catchup
from services.index.catchup import PeerState, range_bounds, serves_alone
from services.index.records import ClipRecord
from services.index.shard import ShardIndex


def peer(number: int, serving: bool | None, live_at_open: int | None = None) -> PeerState:
    return PeerState(number, serving, live_at_open)


@pytest.mark.parametrize(("replica", "live", "peers", "waited_s", "serves"), [
    # Replica 0 with clips is the truth: at once when every peer answers, else after alone_after_s.
    (0, 5, [peer(1, False, 9)], 0.0, True),
    (0, 5, [peer(1, False)], 0.0, True),
    (0, 5, [peer(1, None)], 0.0, False),
    (0, 5, [peer(1, None)], 11.0, True),
    # A new deployment: every replica empty; replica 0 serves once every peer says so.
    (0, 0, [peer(1, False, 0)], 0.0, True),
    (0, 0, [peer(1, False, 0), peer(2, False)], 0.0, False),
    # Replica 0 lost its volume: it never serves empty while a peer that may hold clips is silent ...
    (0, 0, [peer(1, False, 7)], 100.0, False),
    (0, 0, [peer(1, None)], 100.0, False),
    # ... and replica 1 serves instead once replica 0 says it opened empty.
    (1, 7, [peer(0, False, 0)], 0.0, True),
    (1, 7, [peer(0, False, 5)], 0.0, False),
    (1, 7, [peer(0, False)], 100.0, False),
    (1, 7, [peer(0, None)], 100.0, False),
    (1, 0, [peer(0, False, 0)], 100.0, False),
    (2, 3, [peer(0, False, 0), peer(1, False, 0)], 0.0, True),
    (2, 3, [peer(0, False, 0), peer(1, None)], 0.0, False),
])
def test_the_lowest_numbered_replica_that_opened_with_clips_serves(
        replica: int, live: int, peers: list[PeerState], waited_s: float, serves: bool) -> None:
    assert serves_alone(replica, live, peers, waited_s, alone_after_s=10.0) is serves


@pytest.mark.parametrize(("clips", "per_range", "max_bounds", "bounds"), [
    (25, 10, 10_000, [9, 19]),  # the last 5 clips in the open range after the last bound
    (20, 10, 10_000, [9, 19]),  # an exact multiple: the open range is empty
    (9, 10, 10_000, []),  # fewer clips than a range: one range, the whole shard
    (0, 10, 10_000, []),
    (25, 2, 5, [5, 11, 17, 23]),  # 12 bounds are more than a request takes: every third of them
    (2500, 1, 10_000, list(range(2500))),  # a range per clip, read in pages of 1,000 all the same
])
def test_range_bounds_are_every_nth_clip_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clips: int,
                                            per_range: int, max_bounds: int, bounds: list[int]) -> None:
    monkeypatch.setattr(catchup, "MAX_DIGEST_BOUNDS", max_bounds)
    ids = [f"v:{i:09d}" for i in range(clips)]
    with ShardIndex(tmp_path, model_id="m", dim=4) as shard:
        shard.upsert([ClipRecord(cid, "v", 0.0, 1.0, np.ones(4, np.float32), model_id="m") for cid in ids[::-1]])
        assert range_bounds(shard, per_range) == [ids[i] for i in bounds]

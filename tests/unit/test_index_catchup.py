"""Which replica serves first when a whole shard restarts and no replica is SERVING."""

from __future__ import annotations

import pytest

from services.index.catchup import PeerState, serves_alone


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

"""`vidsearch replicas`: when the replicas of the shards count as agreeing."""

from __future__ import annotations

import pytest

from services.cli.replicas import ReplicaReport, agree

A, B = "a:1", "b:1"


@pytest.mark.parametrize(("reports", "same"), [
    ([ReplicaReport(0, A, 5, "x"), ReplicaReport(0, B, 5, "x"), ReplicaReport(1, A, 7, "y")], True),
    ([ReplicaReport(0, A, 5, "x"), ReplicaReport(0, B, 5, "z")], False),  # same count, other content
    ([ReplicaReport(0, A, 5, "x"), ReplicaReport(0, B, 4, "x")], False),
    ([ReplicaReport(0, A, 5, "x"), ReplicaReport(0, B, 5, "x", catching_up=True)], False),
    ([ReplicaReport(0, A, 5, "x"), ReplicaReport(0, B, error="unavailable")], False),
    ([ReplicaReport(0, A, 5, "x"), ReplicaReport(1, B, 6, "z")], True),  # different shards may differ
])
def test_replicas_agree_only_when_every_shard_has_one_content(reports: list[ReplicaReport], same: bool) -> None:
    assert agree(reports) is same

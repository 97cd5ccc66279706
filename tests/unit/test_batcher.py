"""The dynamic batcher merges concurrent callers, keeps order, bounds its queue."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from services.common.errors import Overloaded
from services.encoder.batcher import DynamicBatcher


def _doubler(calls: list[list[int]], delay: float = 0.0):
    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        if delay:
            time.sleep(delay)
        return [2 * i for i in items]

    return run


def test_concurrent_callers_share_batches_and_get_their_own_results() -> None:
    calls: list[list[int]] = []

    async def main() -> list[list[int]]:
        b = DynamicBatcher(_doubler(calls, 0.01), max_batch_size=8, max_queue_delay_ms=20, max_queue_items=64)
        try:
            return await asyncio.gather(*(b.submit([i, 100 + i]) for i in range(12)))
        finally:
            await b.close()

    results = asyncio.run(main())
    assert results == [[2 * i, 200 + 2 * i] for i in range(12)]
    assert max(len(c) for c in calls) == 8, calls
    assert len(calls) <= 4, calls
    assert sorted(x for c in calls for x in c) == sorted([*range(12), *range(100, 112)])


def test_batch_size_one_runs_each_item_alone() -> None:
    calls: list[list[int]] = []

    async def main() -> None:
        b = DynamicBatcher(_doubler(calls), max_batch_size=1, max_queue_delay_ms=0, max_queue_items=64)
        await asyncio.gather(*(b.submit([i]) for i in range(5)))
        await b.close()

    asyncio.run(main())
    assert calls == [[0], [1], [2], [3], [4]]


def test_a_lone_request_waits_at_most_the_queue_delay() -> None:
    async def main() -> float:
        b = DynamicBatcher(_doubler([]), max_batch_size=64, max_queue_delay_ms=50, max_queue_items=64)
        t0 = time.perf_counter()
        assert await b.submit([3]) == [6]
        await b.close()
        return time.perf_counter() - t0

    assert asyncio.run(main()) < 1.0


def test_full_queue_is_refused_with_overloaded() -> None:
    release = threading.Event()

    def slow(items: list[int]) -> list[int]:
        release.wait(5)
        return items

    async def main() -> None:
        b = DynamicBatcher(slow, max_batch_size=2, max_queue_delay_ms=0, max_queue_items=4)
        first = asyncio.ensure_future(b.submit([1, 2]))
        await asyncio.sleep(0.05)  # the worker is now blocked in the first batch
        queued = asyncio.ensure_future(b.submit([3, 4, 5, 6]))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="queue is full"):
            await b.submit([7])
        release.set()
        assert await first == [1, 2]
        assert await queued == [3, 4, 5, 6]
        assert b.stats.rejected == 1
        await b.close()

    asyncio.run(main())


def test_a_failing_batch_fails_its_callers_and_the_batcher_keeps_working() -> None:
    def flaky(items: list[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("boom")
        return items

    async def main() -> None:
        b = DynamicBatcher(flaky, max_batch_size=4, max_queue_delay_ms=0, max_queue_items=16)
        with pytest.raises(RuntimeError, match="boom"):
            await b.submit([13])
        assert await b.submit([1]) == [1]
        await b.close()

    asyncio.run(main())


def test_stats_stay_bounded_and_prometheus_sees_every_batch() -> None:
    from prometheus_client import REGISTRY

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"modality": "bounded-test"}) or 0.0

    async def main() -> DynamicBatcher:
        b = DynamicBatcher(_doubler([]), name="bounded-test", max_batch_size=4, max_queue_delay_ms=1,
                           max_queue_items=64)
        for _ in range(50):
            await asyncio.gather(*(b.submit([i]) for i in range(6)))
        await b.close()
        return b

    b = asyncio.run(main())
    # 300 items in >= 100 batches, yet one counter per batch size, not one entry per batch.
    assert set(b.stats.batch_sizes) <= {1, 2, 3, 4}
    assert sum(b.stats.batch_sizes.values()) == b.stats.batches and b.stats.items == 300
    assert sample("vidsearch_encoder_batch_size_count") == b.stats.batches
    assert sample("vidsearch_encoder_batch_size_sum") == 300
    assert sample("vidsearch_encoder_queue_wait_seconds_count") == 300
    assert sample("vidsearch_encoder_batch_inference_seconds_count") == b.stats.batches
    assert sample("vidsearch_encoder_queue_items") == 0

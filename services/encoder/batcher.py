"""Dynamic batching: merges items from concurrent callers into batches for one model.

Callers ``await submit(items)``; a single worker takes up to ``max_batch_size`` queued items,
waiting at most ``max_queue_delay_ms`` after the first one for the batch to fill, runs the
batch function in one dedicated thread (the model is not re-entrant and inference must not
block the event loop) and hands each caller its slice of the results. The queue is bounded:
when ``max_queue_items`` are waiting, new work is refused with ``Overloaded`` instead of
letting latency grow without limit.

Per modality (the batcher's ``name``) it exports the Prometheus metrics the encoder is scaled
and debugged by: items waiting (the HPA's signal), time waited, batch sizes and inference time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import Counter as CounterMetric
from prometheus_client import Gauge, Histogram

from services.common.errors import Overloaded

log = logging.getLogger(__name__)

QUEUE_ITEMS = Gauge("vidsearch_encoder_queue_items", "Items waiting for a batch, by modality.", ["modality"])
QUEUE_WAIT = Histogram(
    "vidsearch_encoder_queue_wait_seconds", "Time an item waited from submission to the start of its batch.",
    ["modality"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "vidsearch_encoder_batch_size", "Items per batch handed to the model, by modality.", ["modality"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
INFERENCE = Histogram(
    "vidsearch_encoder_batch_inference_seconds", "Model time per batch (preprocessing excluded), by modality.",
    ["modality"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REJECTED = CounterMetric("vidsearch_encoder_rejected_items_total",
                         "Items refused with RESOURCE_EXHAUSTED because the queue was full.", ["modality"])

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatcherStats:
    """Counters for benchmarks and tests; bounded however long the batcher runs."""

    batches: int = 0
    items: int = 0
    rejected: int = 0
    # Batches seen per batch size: at most max_batch_size keys.
    batch_sizes: Counter[int] = field(default_factory=Counter)

    @property
    def mean_batch_size(self) -> float:
        return self.items / self.batches if self.batches else 0.0


@dataclass(frozen=True)
class _ModalityMetrics:
    """One modality's children of the module's Prometheus metrics."""

    queued: Gauge
    waited: Histogram
    sizes: Histogram
    inference: Histogram
    rejected: CounterMetric


@dataclass
class _Pending(Generic[T]):
    item: T
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class DynamicBatcher(Generic[T, R]):
    """Batches items of one modality for ``run_batch(list[T]) -> list[R]``."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int,
        max_queue_delay_ms: float,
        max_queue_items: int,
        name: str = "batch",
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if max_queue_items < max_batch_size:
            raise ValueError("max_queue_items must be >= max_batch_size")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_ms / 1000.0
        self.max_queue_items = max_queue_items
        self.name = name
        self._queue: deque[_Pending[T]] = deque()
        self._wakeup = asyncio.Event()
        # One thread: batches of one model run one after another, in submission order.
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-model")
        self._worker: asyncio.Task | None = None
        self.stats = BatcherStats()
        self._metrics = _ModalityMetrics(QUEUE_ITEMS.labels(name), QUEUE_WAIT.labels(name), BATCH_SIZE.labels(name),
                                         INFERENCE.labels(name), REJECTED.labels(name))

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._loop(), name=f"{self.name}-batcher")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(Overloaded(f"{self.name} encoder is shutting down"))
        self._metrics.queued.set(0)

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Queues ``items`` (kept together in order) and returns their results."""
        if not items:
            return []
        if len(self._queue) + len(items) > self.max_queue_items:
            self.stats.rejected += len(items)
            self._metrics.rejected.inc(len(items))
            raise Overloaded(
                f"{self.name} queue is full ({len(self._queue)} of {self.max_queue_items} items waiting); retry later"
            )
        self.start()
        loop = asyncio.get_running_loop()
        pendings = [_Pending(item, loop.create_future()) for item in items]
        self._queue.extend(pendings)
        self._metrics.queued.set(len(self._queue))
        self._wakeup.set()
        return list(await asyncio.gather(*(p.future for p in pendings)))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Let the batch fill until it is full or the oldest item has waited long enough.
            deadline = self._queue[0].enqueued + self.max_queue_delay_s
            while len(self._queue) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = [self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))]
            batch = [p for p in batch if not p.future.cancelled()]
            metrics = self._metrics
            metrics.queued.set(len(self._queue))
            if not batch:
                continue
            started = time.monotonic()
            for p in batch:
                metrics.waited.observe(started - p.enqueued)
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, [p.item for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name} batch returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the error
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            metrics.inference.observe(time.monotonic() - started)
            metrics.sizes.observe(len(batch))
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.batch_sizes[len(batch)] += 1
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)


"""Image batches replayed from CUDA graphs, one graph per batch-size bucket.

An eager ViT-B/32 forward on a GPU is launch-bound: a few hundred kernel launches, each taking
the GIL back, which starves the event loop and the preprocessing threads that feed the model.
A captured graph launches the whole forward with one call that releases the GIL.

A batch of ``n`` images runs in the smallest bucket ``>= n`` (1, 2, 4, ... up to the largest
batch the batcher forms); the rows past ``n`` hold stale pixels and their outputs are dropped (no
layer mixes rows of a batch). Each graph is checked against the eager forward when it is
captured; a graph that cannot be captured, or disagrees, is left out and its sizes run eagerly.
"""
from __future__ import annotations

import bisect
import logging
from collections.abc import Callable

import numpy as np
import torch

log = logging.getLogger(__name__)

#: What capturing returns: run the captured work again and return its (static) output tensor.
Replay = Callable[[], torch.Tensor]
Capture = Callable[[Callable[[], torch.Tensor]], Replay]

#: Largest difference from the eager forward a graph may show (fp16 unit vectors).
TOLERANCE = 2e-3


def bucket_sizes(max_batch_size: int) -> list[int]:
    """Powers of two below ``max_batch_size``, then ``max_batch_size`` itself."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return [*sizes, max_batch_size]


def capture_cuda_graph(work: Callable[[], torch.Tensor]) -> Replay:
    """Warm ``work`` up on a side stream (lazy cuBLAS/cuDNN set-up must not be captured), capture it
    once, and return its replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            work()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = work()

    def replay() -> torch.Tensor:
        graph.replay()
        return output

    return replay


class GraphedImages:
    """``encode(uint8 [n, S, S, 3]) -> float32 [n, d]`` through one captured graph per bucket."""

    def __init__(self, encode_images: Callable[[torch.Tensor], torch.Tensor], *, image_size: int,
                 device: torch.device, max_batch_size: int, capture: Capture = capture_cuda_graph,
                 seed: int = 0) -> None:
        self._encode = encode_images
        self._inputs: dict[int, torch.Tensor] = {}
        self._replays: dict[int, Replay] = {}
        rng = np.random.default_rng(seed)
        with torch.inference_mode():
            for size in bucket_sizes(max_batch_size):
                static = torch.zeros(size, image_size, image_size, 3, dtype=torch.uint8, device=device)
                try:
                    replay = capture(lambda static=static: self._encode(static))
                    probe = torch.from_numpy(rng.integers(0, 256, tuple(static.shape), dtype=np.uint8))
                    static.copy_(probe)
                    error = float((replay().float() - self._encode(static).float()).abs().max())
                except Exception as exc:  # noqa: BLE001 - any failure only costs this bucket its graph
                    log.warning("no CUDA graph for batches of %d (%s: %s); they run eagerly",
                                size, type(exc).__name__, exc)
                    continue
                if error > TOLERANCE:
                    log.warning("CUDA graph for batches of %d differs from eager by %.2g; it runs eagerly",
                                size, error)
                    continue
                self._inputs[size], self._replays[size] = static, replay
        self.sizes = sorted(self._replays)
        log.info("CUDA graphs captured for image batches of %s", self.sizes)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        at = bisect.bisect_left(self.sizes, n)
        if n == 0 or at == len(self.sizes):
            return self._encode(images)
        size = self.sizes[at]
        self._inputs[size][:n].copy_(images, non_blocking=True)
        return self._replays[size]()[:n].clone()

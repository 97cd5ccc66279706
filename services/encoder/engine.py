"""The encoder's core: input validation and preprocessing, per-modality dynamic batching, inference.

Knows nothing of gRPC. Decoding and resizing run on a CPU thread pool; each modality has its
own ``DynamicBatcher`` so a burst of text queries never waits behind a batch of videos.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from services.common.errors import InvalidInput
from services.common.settings import setting
from services.encoder.batcher import DynamicBatcher
from services.encoder.runner import ModelRunner
from services.media.frames import FrameSampler, decode_image, to_model_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineLimits:
    """Input limits; anything beyond them is INVALID_ARGUMENT, not a crash or a stall."""

    max_text_chars: int = setting(1000, "Longest text query, in characters.")
    max_items_per_request: int = setting(256, "Most texts, images or videos in one Encode call.")
    max_image_pixels: int = setting(40_000_000, "Largest decoded image, in pixels (against decompression bombs).")
    max_image_bytes: int = setting(32 * 1024 * 1024, "Largest image file to embed, in bytes.")
    max_video_bytes: int = setting(48 * 1024 * 1024, "Largest video file to embed, in bytes.")


@dataclass(frozen=True)
class BatchingConfig:
    """The dynamic-batching knobs, per modality (text, image, video)."""

    max_batch_size: int = setting(32, "Largest batch handed to the model; 1 disables batching.")
    max_queue_delay_ms: float = setting(5.0, "Longest the oldest queued item waits for its batch to fill.")
    max_queue_items: int = setting(1024, "Items waiting per modality before new requests get RESOURCE_EXHAUSTED.")


@dataclass
class FramesClip:
    """A clip's sampled frames at model resolution, uint8 [n, size, size, 3], n <= frames per clip."""

    frames: np.ndarray


class EncoderEngine:
    """Embeds text, images and clips with one model, batching concurrent callers per modality."""

    def __init__(self, runner: ModelRunner, batching: BatchingConfig, limits: EngineLimits,
                 preprocess_workers: int = 2) -> None:
        self.runner = runner
        self.batching = batching
        self.limits = limits
        self.sampler = FrameSampler(num_frames=runner.num_frames, size=runner.image_size, crop=runner.crop)
        self._cpu = ThreadPoolExecutor(max_workers=preprocess_workers, thread_name_prefix="preprocess")
        # One model thread shared by all modalities: the model is not re-entrant.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        kw = {
            "max_batch_size": batching.max_batch_size,
            "max_queue_delay_ms": batching.max_queue_delay_ms,
            "max_queue_items": batching.max_queue_items,
            "executor": self._model_thread,
        }
        self.text = DynamicBatcher(runner.encode_texts, name="text", **kw)
        self.images = DynamicBatcher(runner.encode_images, name="image", **kw)
        self.videos = DynamicBatcher(runner.encode_clips, name="video", **kw)

    def _check_count(self, n: int, what: str) -> None:
        if n == 0:
            raise InvalidInput(f"no {what} given")
        if n > self.limits.max_items_per_request:
            raise InvalidInput(f"at most {self.limits.max_items_per_request} {what} per request, got {n}")

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self._check_count(len(texts), "texts")
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidInput(f"text {i} is empty")
            if len(text) > self.limits.max_text_chars:
                raise InvalidInput(f"text {i} has {len(text)} characters; the limit is {self.limits.max_text_chars}")
        return np.stack(await self.text.submit(list(texts)))

    def _prepare_image(self, index: int, data: bytes) -> np.ndarray:
        if len(data) > self.limits.max_image_bytes:
            raise InvalidInput(f"image {index} is {len(data)} bytes; the limit is {self.limits.max_image_bytes}")
        try:
            image = decode_image(data, self.limits.max_image_pixels)
        except InvalidInput as exc:
            raise InvalidInput(f"image {index}: {exc}") from None
        return to_model_input(image, self.runner.image_size, crop=self.runner.crop)

    async def encode_images(self, images: Sequence[bytes]) -> np.ndarray:
        self._check_count(len(images), "images")
        loop = asyncio.get_running_loop()
        prepared = await asyncio.gather(
            *(loop.run_in_executor(self._cpu, self._prepare_image, i, data) for i, data in enumerate(images))
        )
        return np.stack(await self.images.submit(prepared))

    def check_frames(self, index: int, frames: np.ndarray) -> FramesClip:
        size, t = self.runner.image_size, self.runner.num_frames
        if frames.ndim != 4 or frames.shape[3] != 3:
            raise InvalidInput(f"clip {index}: frames must be [count, height, width, 3] RGB, got {frames.shape}")
        if not 1 <= frames.shape[0] <= t:
            raise InvalidInput(f"clip {index}: {frames.shape[0]} frames; the model takes 1..{t} per clip")
        if frames.shape[1:3] != (size, size):
            raise InvalidInput(
                f"clip {index}: frames are {frames.shape[2]}x{frames.shape[1]}; the model needs {size}x{size}"
            )
        return FramesClip(np.ascontiguousarray(frames, dtype=np.uint8))

    def _sample_video(self, index: int, data: bytes, start: float, end: float) -> FramesClip:
        if len(data) > self.limits.max_video_bytes:
            raise InvalidInput(f"clip {index}: video is {len(data)} bytes; the limit is {self.limits.max_video_bytes}")
        try:
            sampled = self.sampler.sample(data, start, end if end > 0 else None)
        except InvalidInput as exc:
            raise InvalidInput(f"clip {index}: {exc}") from None
        return FramesClip(sampled.frames[sampled.mask])

    async def encode_clips(self, clips: Sequence[FramesClip | tuple[bytes, float, float]]) -> np.ndarray:
        """Clips as frames (already validated with ``check_frames``) or (video bytes, start, end)."""
        self._check_count(len(clips), "clips")
        loop = asyncio.get_running_loop()
        prepared = await asyncio.gather(*(
            asyncio.sleep(0, c) if isinstance(c, FramesClip)
            else loop.run_in_executor(self._cpu, self._sample_video, i, *c)
            for i, c in enumerate(clips)
        ))
        return np.stack(await self.videos.submit([c.frames for c in prepared]))

    async def warm_up(self) -> None:
        """Runs one batch per modality so the first real request does not pay for lazy set-up."""
        size = self.runner.image_size
        await self.text.submit(["warm-up"])
        await self.images.submit([np.zeros((size, size, 3), np.uint8)])
        await self.videos.submit([np.zeros((self.runner.num_frames, size, size, 3), np.uint8)])

    async def close(self) -> None:
        for batcher in (self.text, self.images, self.videos):
            await batcher.close()
        self._cpu.shutdown(wait=False, cancel_futures=True)
        self._model_thread.shutdown(wait=False, cancel_futures=True)

"""Training batches: the clips of the train split, each epoch's plan, and the micro-batches of a step.

An epoch is a seeded permutation of the training clips, each with one of its captions drawn for
that epoch, so a batch never holds a clip twice and the loss's diagonal is its only positive.
With time reversal (see `augment`), every micro-batch also holds each of its clips played
backwards, captioned with the opposite motion: twice the pairs, each clip next to its motion twin.
With ``frames_per_clip``, each clip shows only that many of its frames, drawn afresh every step
and kept in order at their own positions (the rest masked, so never encoded): the frame encoder,
most of a step's work, runs on fewer frames, and a clip is seen at different moments each epoch.
``batch_size`` counts clips per optimiser step over all processes (as in CLIP4Clip); each of the
``grad_accum`` micro-batches is its own contrastive problem of ``batch_size / grad_accum`` clips,
split evenly between the processes. The plan does not depend on the number of processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from services.common.errors import VidsearchError
from services.training import augment
from services.training.distributed import World
from services.training.frame_cache import FrameCache

log = logging.getLogger(__name__)


class TrainingError(VidsearchError):
    """The settings, the data or the output directory do not allow training."""


class TrainingSet:
    """The distinct training clips (frame-cache rows) and the captions of each.

    ``reversed_captions``, when given, holds for each clip the caption of its frames played
    backwards for each of its captions, in the same order.
    """

    def __init__(self, rows: np.ndarray, captions: list[tuple[str, ...]],
                 reversed_captions: list[tuple[str, ...]] | None = None) -> None:
        if reversed_captions is not None and [len(c) for c in reversed_captions] != [len(c) for c in captions]:
            raise ValueError("reversed_captions must pair with captions one for one")
        self.rows = rows
        self.captions = captions
        self.reversed_captions = reversed_captions

    @classmethod
    def from_entries(cls, entries: Sequence[Any], cache: FrameCache, languages: Sequence[str],
                     split: str = "train", *, paraphrase: bool = False, reverse: bool = False) -> TrainingSet:
        """The split's clips with their captions in ``languages``; ``paraphrase`` and ``reverse``
        add the synthetic corpus' augmentations (see `augment`)."""
        by_row: dict[int, dict[str, str | None]] = defaultdict(dict)  # caption -> reversed caption
        for entry in entries:
            if entry.split != split or entry.language not in languages:
                continue
            try:
                templates = augment.paraphrase_templates(entry) if paraphrase else None
                forward = augment.captions_of(entry, templates) if templates else (entry.caption,)
                backward = (augment.captions_of(entry, templates or (entry.template,), reverse=True)
                            if reverse else (None,) * len(forward))
            except augment.AugmentationError as exc:
                raise TrainingError(str(exc)) from exc
            by_row[cache.row(entry)].update(zip(forward, backward, strict=True))
        if not by_row:
            raise TrainingError(f"the manifest has no {split!r} captions in languages {list(languages)}")
        rows = sorted(by_row)
        captions = [tuple(by_row[r]) for r in rows]
        reversed_captions = [tuple(by_row[r].values()) for r in rows] if reverse else None
        return cls(np.asarray(rows, dtype=np.int64), captions, reversed_captions)

    def __len__(self) -> int:
        return len(self.rows)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for i, (row, captions) in enumerate(zip(self.rows.tolist(), self.captions, strict=True)):
            record = [row, captions] if self.reversed_captions is None else [row, captions, self.reversed_captions[i]]
            digest.update(json.dumps(record, ensure_ascii=False).encode())
        return digest.hexdigest()[:16]

    def epoch_picks(self, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's clip order (indices into this set) and which caption of each clip is drawn."""
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(self))
        return order, rng.integers(0, [len(self.captions[i]) for i in order])

    def epoch_plan(self, seed: int, epoch: int) -> tuple[np.ndarray, list[str]]:
        """The epoch's clip order (indices into this set) and the caption drawn for each."""
        order, picks = self.epoch_picks(seed, epoch)
        return order, [self.captions[i][k] for i, k in zip(order.tolist(), picks.tolist(), strict=True)]

    def reversed_plan(self, seed: int, epoch: int) -> list[str]:
        """For `epoch_plan`'s clips, the caption of each played backwards."""
        if self.reversed_captions is None:
            raise TrainingError("this training set has no reversed captions")
        order, picks = self.epoch_picks(seed, epoch)
        return [self.reversed_captions[i][k] for i, k in zip(order.tolist(), picks.tolist(), strict=True)]


@dataclass(frozen=True)
class Geometry:
    """How an optimiser step's clips split into micro-batches and processes."""

    batch_size: int  # clips per optimiser step, all processes together
    grad_accum: int
    world_size: int
    steps_per_epoch: int

    @property
    def micro(self) -> int:
        return self.batch_size // self.grad_accum

    @property
    def per_rank(self) -> int:
        return self.micro // self.world_size

    @classmethod
    def plan(cls, n_clips: int, batch_size: int, grad_accum: int, world_size: int) -> Geometry:
        unit = grad_accum * world_size
        if batch_size % unit:
            raise TrainingError(f"--batch-size {batch_size} must be a multiple of grad_accum x processes = {unit}")
        if batch_size > n_clips:
            fitted = n_clips // unit * unit
            if fitted == 0:
                raise TrainingError(f"{n_clips} training clips cannot fill {unit} micro-batches")
            log.warning("batch size %d exceeds the %d training clips; using %d", batch_size, n_clips, fitted)
            batch_size = fitted
        # The last partial batch of an epoch is dropped: every step contrasts the same number of
        # clips, and every process gathers equally shaped embeddings.
        return cls(batch_size, grad_accum, world_size, n_clips // batch_size)


@dataclass
class MicroBatch:
    """One process's share of one micro-batch."""

    texts: list[str]
    frames: torch.Tensor  # uint8 [b, T, S, S, 3]
    mask: torch.Tensor  # bool [b, T]
    clip_ids: torch.Tensor  # int64 [b]: index of each clip in the training set
    reversed_from: int | None = None  # rows from here on are the earlier rows' clips played backwards


def micro_batches(trainset: TrainingSet, cache: FrameCache, geometry: Geometry, world: World, seed: int,
                  epoch: int, first_step: int, pin: bool, frames_per_clip: int | None = None
                  ) -> Iterator[list[MicroBatch]]:
    """This process's micro-batches for each remaining step of ``epoch`` (from ``first_step``)."""
    order, captions = trainset.epoch_plan(seed, epoch)
    reverse = trainset.reversed_captions is not None
    backward = trainset.reversed_plan(seed, epoch) if reverse else []
    for step in range(first_step, geometry.steps_per_epoch):
        step_batches = []
        for m in range(geometry.grad_accum):
            start = step * geometry.batch_size + m * geometry.micro + world.rank * geometry.per_rank
            picked = slice(start, start + geometry.per_rank)
            frames, mask = cache.clip(trainset.rows[order[picked]])
            if frames_per_clip is not None:  # drawn for the whole micro-batch: the same for any process count
                noise = np.random.default_rng([seed, epoch, step, m]).random((geometry.micro, mask.shape[1]))
                share = noise[world.rank * geometry.per_rank : (world.rank + 1) * geometry.per_rank]
                mask = keep_frames(mask, frames_per_clip, share)
            frames_t, mask_t = torch.from_numpy(frames), torch.from_numpy(mask)
            texts, clip_ids = captions[picked], torch.from_numpy(order[picked])
            reversed_from = len(texts) if reverse else None
            if reverse:  # the reversed copy of clip i is "clip" i + len(trainset): never the same clip
                frames_t, mask_t = torch.cat([frames_t, frames_t.flip(1)]), torch.cat([mask_t, mask_t.flip(1)])
                texts, clip_ids = texts + backward[picked], torch.cat([clip_ids, clip_ids + len(trainset)])
            if pin:
                frames_t, mask_t = frames_t.pin_memory(), mask_t.pin_memory()
            step_batches.append(MicroBatch(texts, frames_t, mask_t, clip_ids, reversed_from))
        yield step_batches


def keep_frames(mask: np.ndarray, k: int, noise: np.ndarray) -> np.ndarray:
    """``mask [b, T]`` with at most ``k`` of each clip's valid frames left valid: those of least ``noise [b, T]``."""
    noise = np.where(mask, noise, np.inf)
    kept = np.zeros_like(mask)
    np.put_along_axis(kept, np.argsort(noise, axis=1)[:, :k], True, axis=1)
    return kept & mask


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Produce ``items`` on a background thread, ``depth`` ahead: reading the map overlaps the step."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                box.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except Exception as exc:  # noqa: BLE001 -- handed to the consumer, which re-raises it
            put("error", exc)

    threading.Thread(target=produce, name="batch-prefetch", daemon=True).start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()  # the consumer stopped early: let the producer end

"""Fine-tuning the video-text model on a manifest's train split with CLIP4Clip's recipe.

AdamW with one learning rate for the pretrained towers and another for the new layers, linear
warm-up then cosine decay, gradient accumulation, autocast on GPU, data parallelism over
``torchrun`` processes with the contrastive loss over the global batch. Frames come from the
frame cache, so no step decodes video.

How steps are made of clips is `batches`' part; the plan does not depend on the number of
processes, so a resumed run may use a different number of them.

The output directory::

    checkpoints/step-00000120/model/             the model, in the project's checkpoint format
    checkpoints/step-00000120/trainer_state.pt   optimiser, schedule, scaler, step, epoch, RNG states
    checkpoints/latest                           names the newest complete checkpoint
    model/                                       the final model, loadable by the encoder service
    train_log.jsonl                              one line per optimiser step and per validation
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from services.common.atomic import write_atomic
from services.model.checkpoint import build_model, load_checkpoint, save_checkpoint
from services.model.clip4clip import VideoTextModel
from services.model.config import ModelConfig, production, tiny
from services.model.temporal import build_temporal
from services.training.batches import (
    Geometry,
    MicroBatch,
    TrainingError,
    TrainingSet,
    micro_batches,
    prefetch,
)
from services.training.distributed import (
    World,
    barrier,
    gather_ids,
    gather_objects,
    gather_with_grad,
    init_world,
    shutdown,
)
from services.training.frame_cache import FrameCache, open_frame_cache
from services.training.loss import clamp_logit_scale_, contrastive_loss, reversal_loss

log = logging.getLogger(__name__)

STATE_FORMAT = "vidsearch.trainer-state"
STATE_VERSION = 1
STATE_FILE = "trainer_state.pt"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
LOG_FILE = "train_log.jsonl"

PRESETS: dict[str, Callable[..., ModelConfig]] = {"tiny": tiny, "production": production}


@dataclass(frozen=True)
class Recipe:
    """Defaults that depend on whether the towers start pretrained (production) or random (tiny)."""

    epochs: int
    batch_size: int
    lr_pretrained: float
    lr_new: float


RECIPES = {
    # Random towers need an ordinary learning rate everywhere.
    "tiny": Recipe(epochs=10, batch_size=16, lr_pretrained=1e-3, lr_new=1e-3),
    # CLIP4Clip: CLIP's weights move at 1e-7, new layers (projection, seqTransf) at 1e-4, batch 128.
    "production": Recipe(epochs=5, batch_size=128, lr_pretrained=1e-7, lr_new=1e-4),
}


@dataclass(frozen=True)
class TrainSettings:
    """``vidsearch train``'s options; None means the recipe's default for the model."""

    manifest: Path
    out: Path
    config: str = "tiny"
    model_config: ModelConfig | None = None  # replaces the preset (tests, custom architectures)
    init: Path | None = None
    openclip_weights: Path | None = None
    hf_text_dir: Path | None = None
    temporal: str | None = None
    seq_motion: bool = False  # seqTransf tokens also see each frame's change (ModelConfig.seq_motion)
    epochs: int | None = None
    batch_size: int | None = None
    lr_pretrained: float | None = None
    lr_new: float | None = None
    weight_decay: float = 0.2  # CLIP4Clip's BertAdam; never on biases, norms and the temperature
    warmup: float = 0.1  # fraction of the optimiser steps
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    precision: str = "auto"  # auto: bf16 (else fp16 + GradScaler) on CUDA, fp32 on CPU
    seed: int = 42
    resume: bool = False
    languages: tuple[str, ...] = ("ko", "en")
    paraphrase: bool = False  # synthetic corpus: every training template of a clip's language (see augment)
    reverse_motion: bool = False  # synthetic corpus: each clip also played backwards with the opposite motion
    # with reverse_motion: push each clip and its reversed copy (and their captions) below this cosine
    reversal_margin: float | None = None
    frames_per_clip: int | None = None  # train on this many of each clip's frames, drawn every step (batches)
    cache_dir: Path | None = None  # default: <manifest dir>/.frame_cache
    cache_workers: int | None = None
    device: str | None = None
    checkpoint_every: int | None = None  # optimiser steps; a checkpoint also ends every epoch
    keep_checkpoints: int = 2
    stop_after: int | None = None  # optimiser steps in this run, then checkpoint and stop (preemption)
    validate: bool = True  # text->video recall on the val split after every epoch
    progress: bool = True


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path | None  # the final model; None when the run stopped early
    checkpoint: Path | None
    steps: int
    finished: bool


# -- model and optimisation ------------------------------------------------------------------------


def batch_loss(model: torch.nn.Module, batch: MicroBatch, world: World,
               reversal_margin: float | None = None) -> torch.Tensor:
    """The contrastive loss of the global micro-batch: this process's pairs plus every other's;
    with ``reversal_margin`` (a batch with reversed copies), plus this process's `reversal_loss`."""
    device = world.device
    text_emb, video_emb = model(batch.texts, batch.frames.to(device, non_blocking=True),
                                batch.mask.to(device, non_blocking=True), batch.reversed_from)
    clip_ids = gather_ids(batch.clip_ids.to(device), world)
    raw = model.module if isinstance(model, DistributedDataParallel) else model
    loss = contrastive_loss(gather_with_grad(text_emb, world), gather_with_grad(video_emb, world),
                            raw.logit_scale, clip_ids)
    if reversal_margin is not None:
        if batch.reversed_from is None:
            raise TrainingError("the reversal loss needs batches with reversed clips (reverse_motion)")
        loss = loss + reversal_loss(text_emb, video_emb, batch.reversed_from, reversal_margin)
    return loss


def recipe_for(config: ModelConfig) -> Recipe:
    """Random custom-ViT models (tiny) train like tiny; open_clip architectures and imported published
    weights (which record their preprocessing, `vidsearch model import`) fine-tune like CLIP4Clip."""
    pretrained = config.vision.openclip_name is not None or config.vision.resize is not None
    return RECIPES["production" if pretrained else "tiny"]


def build_training_model(settings: TrainSettings) -> VideoTextModel:
    """The starting model: ``--init``'s checkpoint, else the preset built from local tower weights."""
    if settings.init is not None:
        model = load_checkpoint(settings.init, device="cpu", dtype=torch.float32)
        config = _with_temporal(model.config, settings)
        if config != model.config:
            # CLIP4Clip's usual start: CLIP towers with a fresh temporal aggregator on top.
            model.config = config
            model.temporal = build_temporal(config)
        return model
    if settings.model_config is not None:
        config = _with_temporal(settings.model_config, settings)
    elif settings.config in PRESETS:
        # Each preset's own default temporal aggregator unless one is asked for.
        config = _with_temporal(PRESETS[settings.config](), settings)
    else:
        raise TrainingError(f"--config must be one of {sorted(PRESETS)}, got {settings.config!r}")
    if config.vision.openclip_name and settings.openclip_weights is None:
        raise TrainingError("a production model needs pretrained towers: pass --init CKPT, or "
                            "--openclip-weights FILE and --hf-text-dir DIR")
    try:
        return build_model(config, settings.openclip_weights, settings.hf_text_dir)
    except ValueError as exc:
        raise TrainingError(f"cannot build the {settings.config} model: {exc}") from exc


def _with_temporal(config: ModelConfig, settings: TrainSettings) -> ModelConfig:
    """``config`` with the temporal aggregator the settings ask for (its own unless one is given)."""
    temporal = settings.temporal or config.temporal
    seq_motion = settings.seq_motion or (config.seq_motion and temporal == config.temporal)
    try:
        return dataclasses.replace(config, temporal=temporal, seq_motion=seq_motion)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc


def build_optimizer(model: VideoTextModel, lr_pretrained: float, lr_new: float,
                    weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the model's pretrained/new groups, each split into decayed matrices and
    undecayed vectors (biases, norms, the temperature), as CLIP4Clip's optimiser does."""
    groups = []
    for group in model.param_groups(lr_pretrained, lr_new):
        matrices = [p for p in group["params"] if p.ndim >= 2]
        vectors = [p for p in group["params"] if p.ndim < 2]
        for suffix, params, decay in (("", matrices, weight_decay), ("/no_decay", vectors, 0.0)):
            if params:
                groups.append({"name": group["name"] + suffix, "params": params, "lr": group["lr"],
                               "weight_decay": decay})
    return torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear from 0 to 1 over the warm-up, then cosine down to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise TrainingError(f"--precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16" or not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


# -- RNG state -----------------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": numpy_state,
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {**numpy_state["state"], "key": numpy_state["state"]["key"].numpy().astype(np.uint32)}
    np.random.set_state(numpy_state)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# -- the run ------------------------------------------------------------------------------------


def train(settings: TrainSettings, entries: Sequence[Any] | None = None) -> TrainResult:
    """Train as ``settings`` say; under ``torchrun``, every process calls this."""
    _check_settings(settings)
    world = init_world(settings.device)
    try:
        return _Run(settings, world, entries).run()
    finally:
        shutdown(world)


class _Run:
    def __init__(self, settings: TrainSettings, world: World, entries: Sequence[Any] | None) -> None:
        self.settings = settings
        self.world = world
        self.out = Path(settings.out)
        self.checkpoints = self.out / CHECKPOINTS_DIR
        if entries is None:
            from services.training.manifest import read_manifest

            entries = read_manifest(settings.manifest)
        self.entries = entries

    # -- set-up ----------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        s, world = self.settings, self.world
        resume_from = self._resume_point()
        _seed_everything(s.seed)
        model = load_checkpoint(resume_from / MODEL_DIR, device="cpu", dtype=torch.float32) \
            if resume_from else build_training_model(s)
        recipe = recipe_for(model.config)
        self.cache = self._frame_cache(model.config)
        self.trainset = TrainingSet.from_entries(self.entries, self.cache, s.languages, paraphrase=s.paraphrase,
                                                 reverse=s.reverse_motion)
        self.geometry = Geometry.plan(len(self.trainset), s.batch_size or recipe.batch_size, s.grad_accum,
                                      world.size)
        self.epochs = s.epochs or recipe.epochs
        self.total_steps = self.epochs * self.geometry.steps_per_epoch
        lrs = (s.lr_pretrained if s.lr_pretrained is not None else recipe.lr_pretrained,
               s.lr_new if s.lr_new is not None else recipe.lr_new)
        self.identity = {
            "seed": s.seed, "epochs": self.epochs, "batch_size": self.geometry.batch_size,
            "grad_accum": s.grad_accum, "lr_pretrained": lrs[0], "lr_new": lrs[1],
            "weight_decay": s.weight_decay, "warmup": s.warmup, "languages": list(s.languages),
            "frames_per_clip": s.frames_per_clip, "reversal_margin": s.reversal_margin,
            "data": self.trainset.fingerprint(),
        }
        self.model = model.to(world.device).train()
        self.optimizer = build_optimizer(self.model, *lrs, s.weight_decay)
        warmup_steps = round(s.warmup * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(self.total_steps, warmup_steps))
        self.autocast = _autocast_dtype(s.precision, world.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast == torch.float16)
        self.step, self.epoch, self.step_in_epoch = 0, 0, 0
        if resume_from:
            self._load_state(resume_from)
        else:
            _seed_everything(s.seed + world.rank)  # each process its own dropout masks
        if world.is_main:
            self._trim_log()
            log.info("training %d clips, %d steps/epoch x %d epochs (batch %d = %d x %d micro x %d processes%s)",
                     len(self.trainset), self.geometry.steps_per_epoch, self.epochs, self.geometry.batch_size,
                     self.geometry.grad_accum, self.geometry.per_rank, world.size,
                     ", each clip also reversed" if s.reverse_motion else "")
        ddp = self.model
        if world.distributed:
            ddp = DistributedDataParallel(self.model, device_ids=[world.local_rank] if world.device.type == "cuda"
                                          else None)
        return self._loop(ddp)

    def _resume_point(self) -> Path | None:
        latest = self.checkpoints / LATEST_FILE
        if not self.settings.resume:
            if latest.exists():
                raise TrainingError(f"{self.out} already holds checkpoints; pass --resume to continue "
                                    "or choose another --out")
            return None
        if not latest.exists():
            log.info("no checkpoint in %s; starting from the beginning", self.checkpoints)
            return None
        point = self.checkpoints / latest.read_text(encoding="utf-8").strip()
        if not (point / STATE_FILE).is_file() or not (point / MODEL_DIR).is_dir():
            raise TrainingError(f"{latest} names {point}, which is not a complete checkpoint")
        return point

    def _frame_cache(self, config: ModelConfig) -> FrameCache:
        s, world = self.settings, self.world
        kwargs = {
            "root": s.cache_dir or Path(s.manifest).parent / ".frame_cache",
            "num_frames": config.num_frames,
            "size": config.vision.image_size,
            "crop": config.vision.crop,
            "workers": s.cache_workers,
            "label": str(Path(s.manifest).resolve()),
        }
        # Every clip of the manifest (all splits): evaluation reuses the same cache.
        if world.is_main:
            cache = open_frame_cache(self.entries, progress=s.progress, **kwargs)
        barrier(world)
        if not world.is_main:
            cache = open_frame_cache(self.entries, **kwargs)
        return cache

    # -- the loop ----------------------------------------------------------------------------------

    def _loop(self, ddp: torch.nn.Module) -> TrainResult:
        s, world, geometry = self.settings, self.world, self.geometry
        from tqdm import tqdm

        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (world.is_main and s.progress))
        steps_this_run = 0
        checkpoint: Path | None = None
        try:
            while self.epoch < self.epochs:
                steps = micro_batches(self.trainset, self.cache, geometry, world, s.seed, self.epoch,
                                      self.step_in_epoch, pin=world.device.type == "cuda",
                                      frames_per_clip=s.frames_per_clip)
                for step_batches in prefetch(steps):
                    started = time.perf_counter()
                    lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}  # this step's
                    loss = self._optimiser_step(ddp, step_batches)
                    self.step += 1
                    self.step_in_epoch += 1
                    steps_this_run += 1
                    rate = geometry.batch_size / (time.perf_counter() - started)
                    bar.update(1)
                    bar.set_postfix(epoch=self.epoch, loss=f"{loss:.4f}", clips_s=f"{rate:.1f}")
                    self._log({"step": self.step, "epoch": self.epoch, "loss": loss, "clips_per_s": rate, "lr": lrs,
                               "logit_scale": float(self.model.logit_scale.detach().exp())})
                    end_of_epoch = self.step_in_epoch == geometry.steps_per_epoch
                    if end_of_epoch:
                        self.epoch, self.step_in_epoch = self.epoch + 1, 0
                        self._validate()
                    stopping = s.stop_after is not None and steps_this_run >= s.stop_after
                    stopping = stopping and self.epoch < self.epochs
                    if end_of_epoch or stopping or (s.checkpoint_every and self.step % s.checkpoint_every == 0):
                        checkpoint = self._save()
                    if stopping:
                        return TrainResult(None, checkpoint, self.step, finished=False)
                if geometry.steps_per_epoch == 0:
                    raise TrainingError("an epoch has no steps")
        finally:
            bar.close()
        model_dir = self.out / MODEL_DIR
        if world.is_main:
            save_checkpoint(self.model, model_dir)
            log.info("final model %s saved to %s", self.model.model_id, model_dir)
        barrier(world)
        return TrainResult(model_dir, checkpoint, self.step, finished=True)

    def _optimiser_step(self, ddp: torch.nn.Module, micro_batches: list[MicroBatch]) -> float:
        world, accum = self.world, len(micro_batches)
        total = 0.0
        for i, batch in enumerate(micro_batches):
            # Gradients are all-reduced once per optimiser step, on the last micro-batch.
            sync = ddp.no_sync() if world.distributed and i < accum - 1 else contextlib.nullcontext()
            autocast = (torch.autocast(world.device.type, dtype=self.autocast) if self.autocast
                        else contextlib.nullcontext())
            with sync:
                with autocast:
                    loss = batch_loss(ddp, batch, world, self.settings.reversal_margin) / accum
                self.scaler.scale(loss).backward()
            total += float(loss.detach())
        if self.settings.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        clamp_logit_scale_(self.model.logit_scale)
        return total

    def _validate(self) -> None:
        languages = self.settings.languages
        if not self.settings.validate or not any(e.split == "val" and e.language in languages for e in self.entries):
            return
        if self.world.is_main:
            from services.training.evaluate import EvalSet, embed, retrieval_report

            evalset = EvalSet.from_entries(self.entries, self.cache, "val", self.settings.languages)
            report = retrieval_report(*embed(self.model, self.cache, evalset), evalset)
            summary = {lang: {k: r["t2v"][k] for k in ("r1", "r5", "r10", "median_rank")}
                       for lang, r in report.items()}
            self._log({"step": self.step, "epoch": self.epoch, "val_t2v": summary})
            log.info("epoch %d val text->video %s", self.epoch,
                     {lang: round(v["r1"], 3) for lang, v in summary.items()})
        barrier(self.world)

    # -- checkpoints ----------------------------------------------------------------------------------

    def _save(self) -> Path:
        """Write a checkpoint (rank 0) holding every process's RNG state; returns its directory."""
        rng = gather_objects(_rng_state(), self.world)
        name = f"step-{self.step:08d}"
        final = self.checkpoints / name
        if self.world.is_main:
            staging = self.checkpoints / f".{name}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            save_checkpoint(self.model, staging / MODEL_DIR)
            torch.save({
                "format": STATE_FORMAT,
                "format_version": STATE_VERSION,
                "model_id": self.model.model_id,
                "step": self.step,
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "identity": self.identity,
                "world_size": self.world.size,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng,
            }, staging / STATE_FILE)
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
            _write_atomic(self.checkpoints / LATEST_FILE, name)
            for old in sorted(self.checkpoints.glob("step-*"))[: -max(1, self.settings.keep_checkpoints)]:
                shutil.rmtree(old, ignore_errors=True)
        barrier(self.world)
        return final

    def _load_state(self, point: Path) -> None:
        state = torch.load(point / STATE_FILE, map_location="cpu", weights_only=True)
        if state.get("format") != STATE_FORMAT or state.get("format_version") != STATE_VERSION:
            raise TrainingError(f"{point / STATE_FILE}: not a trainer state this version can read")
        if state["model_id"] != self.model.model_id:
            raise TrainingError(f"{point}: the model and {STATE_FILE} come from different steps")
        differs = {k: (v, self.identity.get(k)) for k, v in state["identity"].items() if self.identity.get(k) != v}
        if differs:
            detail = ", ".join(f"{k} was {old!r}, now {new!r}" for k, (old, new) in differs.items())
            raise TrainingError(f"cannot resume {point} exactly: {detail}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.step_in_epoch = state["step"], state["epoch"], state["step_in_epoch"]
        if len(state["rng"]) == self.world.size:
            _set_rng_state(state["rng"][self.world.rank])
        else:
            log.warning("resuming %d processes from %d: dropout draws differ from an uninterrupted run",
                        self.world.size, len(state["rng"]))
            _seed_everything(self.settings.seed + self.step + self.world.rank)
        log.info("resumed from %s at step %d (epoch %d)", point, self.step, self.epoch)

    # -- the log ----------------------------------------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        if self.world.is_main:
            with open(self.out / LOG_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def _trim_log(self) -> None:
        """Drop records of steps after the resumed checkpoint: they will be run again."""
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / LOG_FILE
        if not path.exists():
            return
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= self.step]
        _write_atomic(path, "".join(line + "\n" for line in kept))


def _check_settings(s: TrainSettings) -> None:
    for name in ("epochs", "batch_size", "grad_accum", "checkpoint_every", "stop_after", "keep_checkpoints",
                 "frames_per_clip"):
        value = getattr(s, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise TrainingError(f"{name} must be a positive integer, got {value!r}")
    if not 0.0 <= s.warmup < 1.0:
        raise TrainingError(f"warmup is a fraction of the steps in [0, 1), got {s.warmup}")
    if not s.languages:
        raise TrainingError("no caption languages to train on")
    if s.reversal_margin is not None:
        if not s.reverse_motion:
            raise TrainingError("reversal_margin needs reverse_motion: it compares each clip with its reversed copy")
        if not -1.0 <= s.reversal_margin < 1.0:
            raise TrainingError(f"reversal_margin is a cosine in [-1, 1), got {s.reversal_margin}")


def read_log(out: str | Path) -> list[dict[str, Any]]:
    """The records of ``OUT/train_log.jsonl``."""
    path = Path(out) / LOG_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_atomic(path: Path, text: str) -> None:
    write_atomic(path, text)

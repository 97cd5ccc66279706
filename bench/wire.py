"""The share of vector conversion (``.tolist()`` into ``repeated float`` and back) in two RPCs.

    python -m bench.wire --json

- ``EncodeVideos``: a real encoder process serving the default model (the smallest, so the
  share is the largest it gets), ``--clips`` clips of frames per request. The conversion is what
  the servicer (``vectors_to_proto``) and the client (``encoder_client._matrix``) do per reply,
  timed in-process on a reply of the same shape; the share is that over the RPC's median time.
  For ViT-B/32 (512-d) the same conversion is set against the model's own time per clip.
- ``Upsert`` of ``--upsert`` clips of ``--dim``-d vectors to a real index process: the client's
  ``values.extend(row.tolist())`` plus the servicer's ``np.asarray(values)`` over the RPC's time,
  then the same request with ``Vector.packed`` bytes (what ingest sends), and the speed-up.

For each, the packed alternative (``ndarray.tobytes`` / ``np.frombuffer``) is timed too: the
part a ``bytes`` field could save is the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

from services.common.encoder_client import EncoderClient, _matrix
from services.common.vectors import packed_vector, vector_from_proto
from services.encoder.servicer import vectors_to_proto
from services.index.convert import record_from_proto
from services.local.processes import ROOT, ServiceProcess
from vidsearch.common.v1 import common_pb2
from vidsearch.encoder.v1 import encoder_pb2
from vidsearch.index.v1 import index_pb2, index_pb2_grpc


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def reply_conversion_s(rows: int, dim: int, repeats: int = 50) -> dict:
    """Servicer + client conversion of one reply of ``rows`` vectors, as repeated float and as bytes."""
    matrix = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)

    def repeated() -> None:
        wire = encoder_pb2.EncodeVideosResponse(embeddings=vectors_to_proto(matrix)).SerializeToString()
        _matrix(encoder_pb2.EncodeVideosResponse.FromString(wire))

    def packed() -> None:
        data = matrix.tobytes()
        np.frombuffer(data, dtype="<f4").reshape(rows, dim)

    serialize_only = encoder_pb2.EncodeVideosResponse(embeddings=vectors_to_proto(matrix))
    return {"repeated_float_s": _median_s(repeated, repeats), "packed_bytes_s": _median_s(packed, repeats),
            "serialize_parse_s": _median_s(
                lambda: encoder_pb2.EncodeVideosResponse.FromString(serialize_only.SerializeToString()), repeats)}


def encode_videos(checkpoint: Path, logs: Path, clips: int, repeats: int) -> dict:
    proc = ServiceProcess("services.encoder", {"VIDSEARCH_ENCODER_CHECKPOINT": str(checkpoint),
                                               "VIDSEARCH_LOG_LEVEL": "WARNING"},
                          logs / "encoder.log", env_prefix="VIDSEARCH_ENCODER").start()
    try:
        proc.wait_serving(timeout=300)

        async def measure() -> tuple[float, int, int]:
            client = EncoderClient(proc.address, timeout_s=120)
            info = await client.info()
            frames = np.random.default_rng(0).integers(
                0, 256, (clips, info.frames_per_clip, info.image_size, info.image_size, 3), dtype=np.uint8)
            await client.encode_frames(list(frames))  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                await client.encode_frames(list(frames))
                times.append(time.perf_counter() - t0)
            return statistics.median(times), info.dimension, info.frames_per_clip

        rpc_s, dim, frames_per_clip = asyncio.run(measure())
    finally:
        proc.stop()
    conv = reply_conversion_s(clips, dim)
    return {"clips": clips, "dim": dim, "frames_per_clip": frames_per_clip, "rpc_ms": rpc_s * 1000,
            "conversion_ms": conv["repeated_float_s"] * 1000, "packed_ms": conv["packed_bytes_s"] * 1000,
            "share": conv["repeated_float_s"] / rpc_s,
            "saved_by_bytes_share": (conv["repeated_float_s"] - conv["packed_bytes_s"]) / rpc_s}


def upsert(n: int, dim: int, logs: Path, repeats: int) -> dict:
    """Both encodings against one shard, alternating request by request so load changes hit both."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def set_vector(msg: common_pb2.ClipRecord, row: np.ndarray, packed: bool) -> None:
        if packed:
            msg.vector.CopyFrom(packed_vector(row))
        else:
            msg.vector.values.extend(row.tolist())

    def build(offset: int, packed: bool) -> index_pb2.UpsertRequest:
        clips = []
        for i, row in enumerate(vectors):
            msg = common_pb2.ClipRecord(clip_id=f"v{offset}:{i:09d}", video_id=f"v{offset}", start_seconds=i * 20.0,
                                        end_seconds=i * 20.0 + 20.0, model_id="bench-model")
            set_vector(msg, row, packed)
            clips.append(msg)
        return index_pb2.UpsertRequest(clips=clips)

    parts: dict[str, dict] = {}
    for name, packed in (("repeated_float", False), ("packed_bytes", True)):
        request = build(0, packed)
        parts[name] = {
            "client_convert_ms": 1000 * _median_s(lambda p=packed: [
                set_vector(common_pb2.ClipRecord(), r, p) for r in vectors], 10),
            "server_convert_ms": 1000 * _median_s(lambda r=request: [vector_from_proto(c.vector) for c in r.clips], 10),
            "record_from_proto_ms": 1000 * _median_s(lambda r=request: [record_from_proto(c) for c in r.clips], 10),
            "rpc_ms": [],
        }
    with tempfile.TemporaryDirectory(prefix="bench-wire-") as data:
        proc = ServiceProcess("services.index", {"VIDSEARCH_INDEX_DATA_DIR": data,
                                                 "VIDSEARCH_INDEX_SHARD_NAME": "shard-0",
                                                 "VIDSEARCH_LOG_LEVEL": "WARNING"},
                              logs / "index.log", env_prefix="VIDSEARCH_INDEX").start()
        try:
            proc.wait_serving(timeout=120)
            with grpc.insecure_channel(proc.address, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
                stub = index_pb2_grpc.IndexServiceStub(ch)
                stub.Upsert(build(-1, False), timeout=120)  # warm-up
                for r in range(repeats):
                    for name, packed in (("repeated_float", False), ("packed_bytes", True)):
                        t0 = time.perf_counter()  # building the request (the client's conversion) included
                        stub.Upsert(build(2 * r + packed, packed), timeout=120)
                        parts[name]["rpc_ms"].append(1000 * (time.perf_counter() - t0))
        finally:
            proc.stop()
    for part in parts.values():
        part["rpc_ms"] = statistics.median(part["rpc_ms"])
        part["share"] = (part["client_convert_ms"] + part["server_convert_ms"]) / part["rpc_ms"]
    return {"clips": n, "dim": dim, **parts,
            "packed_speedup": parts["repeated_float"]["rpc_ms"] / parts["packed_bytes"]["rpc_ms"]}


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 4) if isinstance(value, float) else value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--clips", type=int, default=16, help="clips per EncodeVideos request")
    parser.add_argument("--upsert", type=int, default=1000, help="clips per Upsert request")
    parser.add_argument("--dim", type=int, default=512, help="vector size for Upsert and the ViT-B/32 estimate")
    parser.add_argument("--vit-b32-clip-ms", type=float, default=12 * 1000 / 4133,
                        help="ViT-B/32's time per 12-frame clip; default: the H200's offline 4,133 images/s")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-wire-logs-") as logs:
        videos = encode_videos(args.checkpoint, Path(logs), args.clips, args.repeats)
        ups = upsert(args.upsert, args.dim, Path(logs), args.repeats)
    b32 = reply_conversion_s(args.clips, args.dim)
    b32_ms = b32["repeated_float_s"] * 1000
    result = {
        "encode_videos": _rounded(videos),
        "encode_videos_vit_b32_estimate": {
            "clips": args.clips, "dim": args.dim, "conversion_ms": round(b32_ms, 4),
            "model_ms": round(args.clips * args.vit_b32_clip_ms, 2),
            "share": round(b32_ms / (b32_ms + args.clips * args.vit_b32_clip_ms), 4)},
        "upsert": _rounded(ups),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

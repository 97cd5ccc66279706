"""Ingest throughput against the machine's decoding limit.

``python -m bench.ingest --json`` generates a 720p H.264 video (default 150 s, 25 fps) and in one run
measures
- how long ``ffmpeg -i FILE -f null -`` takes to decode it: the physical limit on this machine;
- how long the shared `FrameSampler` takes to decode and sample it as 20 s clips of 12 frames at
  224 px (one process, the way one decode task works);
- end to end through real processes (Redis, an index shard, the encoder, the ingest service with
  one in-process worker and its decode pool): SubmitVideo until the job has SUCCEEDED, once with
  the tiny test model and once with a randomly initialised ViT-B-32 CLIP4Clip (timing only).
  Each service gets one short warm-up job first, so process start-up is not counted.
It prints one JSON object; every ``*_realtime_factor`` is seconds of video per second of work, and
``sample_vs_ffmpeg`` is the sampler's realtime factor over ffmpeg's. The machine's load average is
included, since other work on the CPUs moves every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import grpc

from services.local.processes import RedisServer, ServiceProcess
from services.media.frames import FrameSampler
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc


def make_h264(path: Path, *, seconds: int, fps: int = 25, size: str = "1280x720") -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("the ffmpeg CLI is needed to generate the benchmark video")
    source = f"testsrc2=s={size}:r={fps}:d={seconds}"
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264",
                    "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)], check=True)


def ffmpeg_decode_seconds(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "null", "-"], check=True)
    return time.perf_counter() - start


def sample_seconds(path: Path, clip_s: float = 20.0, num_frames: int = 12, size: int = 224) -> tuple[float, int]:
    sampler = FrameSampler(num_frames, size)
    duration = sampler.probe(path).duration_s
    ranges = []
    start = 0.0
    while start < duration:
        ranges.append((start, min(start + clip_s, duration)))
        start += clip_s
    began = time.perf_counter()
    clips = sampler.sample_many(path, ranges)
    return time.perf_counter() - began, len(clips)


def _checkpoint(kind: str, directory: Path) -> Path:
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import ModelConfig, TextConfig, VisionConfig, tiny

    config = tiny() if kind == "tiny" else ModelConfig(vision=VisionConfig(openclip_name="ViT-B-32"),
                                                       text=TextConfig(kind="openclip"))
    save_checkpoint(build_model(config), directory)
    return directory


def _ingest_once(address: str, path: Path, video_id: str) -> tuple[float, ingest_pb2.Job]:
    with grpc.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        began = time.perf_counter()
        reply = stub.SubmitVideo(ingest_pb2.SubmitVideoRequest(uri=str(path), video_id=video_id), timeout=60)
        job = [u.job for u in stub.WatchJob(ingest_pb2.WatchJobRequest(job_id=reply.job_id), timeout=3600)][-1]
        elapsed = time.perf_counter() - began
    if job.state != ingest_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"bench job {job.job_id} ended {ingest_pb2.JobState.Name(job.state)}: {job.error}")
    return elapsed, job


def end_to_end_seconds(kind: str, tmp: Path, redis_url: str, video: Path, warm_up: Path) -> tuple[float, int]:
    """Seconds from SubmitVideo to SUCCEEDED for ``video`` with a fresh stack using the ``kind`` model."""
    run_dir = tmp / kind
    run_dir.mkdir()
    checkpoint = _checkpoint(kind, run_dir / "ckpt")
    encoder = ServiceProcess("services.encoder", {"VIDSEARCH_ENCODER_CHECKPOINT": str(checkpoint)},
                             run_dir / "encoder.log", env_prefix="VIDSEARCH_ENCODER").start()
    shard = ServiceProcess("services.index", {"VIDSEARCH_INDEX_DATA_DIR": str(run_dir / "shard")},
                           run_dir / "shard.log", env_prefix="VIDSEARCH_INDEX").start()
    ingest = ServiceProcess("services.ingest", {
        "VIDSEARCH_INGEST_REDIS_URL": redis_url,
        "VIDSEARCH_INGEST_ENCODER": encoder.address,
        "VIDSEARCH_INGEST_INDEX_SHARDS": shard.address,
        "VIDSEARCH_INGEST_MEDIA_ROOT": str(run_dir / "media"),
        "VIDSEARCH_INGEST_ALLOWED_ROOTS": str(video.parent),
        "VIDSEARCH_INGEST_WORKERS": "1",
        "VIDSEARCH_INGEST_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:6]}",
    }, run_dir / "ingest.log", env_prefix="VIDSEARCH_INGEST").start()
    try:
        for proc in (shard, ingest, encoder):
            proc.wait_serving(timeout=600)
        _ingest_once(ingest.address, warm_up, "warm-up")
        elapsed, job = _ingest_once(ingest.address, video, "bench")
        return elapsed, job.clips_done
    finally:
        for proc in (ingest, encoder, shard):
            proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    parser.add_argument("--seconds", type=int, default=150, help="length of the generated video (>= 120)")
    parser.add_argument("--models", default="tiny,vitb32", help="end-to-end runs: tiny, vitb32 or both")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result: dict[str, object] = {"cpu_count": os.cpu_count(), "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as name:
        tmp = Path(name)
        library = tmp / "library"
        library.mkdir()
        video, warm_up = library / "720p.mp4", library / "warm-up.mp4"
        make_h264(video, seconds=args.seconds)
        make_h264(warm_up, seconds=4, size="320x180")
        duration = FrameSampler().probe(video).duration_s
        ffmpeg_s = ffmpeg_decode_seconds(video)
        sample_s, clips = sample_seconds(video)
        result.update({
            "video_seconds": round(duration, 3),
            "video": "1280x720 H.264 (libx264 veryfast, testsrc2), 25 fps",
            "clips": clips,
            "ffmpeg_decode_seconds": round(ffmpeg_s, 3),
            "ffmpeg_decode_realtime_factor": round(duration / ffmpeg_s, 2),
            "sample_seconds": round(sample_s, 3),
            "sample_realtime_factor": round(duration / sample_s, 2),
            "sample_vs_ffmpeg": round(ffmpeg_s / sample_s, 3),
        })
        redis = RedisServer(tmp / "redis").start()
        try:
            for kind in args.models.split(","):
                key = {"tiny": "tiny", "vitb32": "vitb32"}[kind.strip()]
                elapsed, indexed = end_to_end_seconds(key, tmp, redis.url, video, warm_up)
                result[f"end_to_end_seconds_{key}"] = round(elapsed, 3)
                result[f"end_to_end_realtime_factor_{key}"] = round(duration / elapsed, 2)
                result[f"end_to_end_clips_{key}"] = indexed
        finally:
            redis.stop()
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark the FrameSampler against decoding every frame, as ingest uses it.

Generates 720p H.264 videos with a long (250) and a short (25) keyframe interval, cuts each into
20 s clips of 12 frames and times `FrameSampler.sample_many` against a baseline that decodes and
converts every frame. Prints one JSON object. Run: ``python -m bench.sampler --json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import av
import numpy as np

from services.media.frames import FrameSampler, to_model_input

T = TypeVar("T")


def decode_every_frame(
    path: str | Path, ranges: Sequence[tuple[float, float]], num_frames: int = 12, size: int = 224
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """The naive sampler: decode and convert every frame in one pass, keep the one on screen at each
    target time. Returns ((frames, timestamps) per range, frames decoded).

    Picks the same frames as `FrameSampler` (the last frame shown at or before each target), so the
    two do the same work for the caller and their outputs can be compared for equality.
    """
    targets = sorted(
        (start + (slot + 0.5) * (end - start) / num_frames, clip, slot)
        for clip, (start, end) in enumerate(ranges)
        for slot in range(num_frames)
    )
    frames = [np.empty((num_frames, size, size, 3), np.uint8) for _ in ranges]
    times = [np.empty(num_frames) for _ in ranges]
    decoded, i = 0, 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        aspect = float(stream.sample_aspect_ratio or 1)  # non-square pixels (e.g. 128:117 QCIF)
        prev: tuple[float, np.ndarray] | None = None
        for frame in container.decode(stream):
            decoded += 1
            now = float(frame.pts * stream.time_base) - origin
            rgb = frame.to_ndarray(format="rgb24")
            while i < len(targets) and targets[i][0] < now:
                shown = prev or (now, rgb)  # a target before the first frame gets the first frame
                _, clip, slot = targets[i]
                frames[clip][slot] = to_model_input(shown[1], size, pixel_aspect=aspect)
                times[clip][slot] = shown[0]
                i += 1
            prev = (now, rgb)
        for _, clip, slot in targets[i:]:
            if prev is not None:
                frames[clip][slot] = to_model_input(prev[1], size, pixel_aspect=aspect)
                times[clip][slot] = prev[0]
    return list(zip(frames, times, strict=True)), decoded


def make_h264(path: Path, *, seconds: int, fps: int, size: str, gop: int) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("the ffmpeg CLI is needed to generate the benchmark videos")
    source = f"testsrc2=s={size}:r={fps}:d={seconds}"
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264"]
    cmd += ["-preset", "fast", "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop)]
    cmd += ["-sc_threshold", "0", str(path)]
    subprocess.run(cmd, check=True)


def _best_of(repeats: int, run: Callable[[], T]) -> tuple[float, T]:
    """The fastest of ``repeats`` runs (the others measure the machine's noise), and its result."""
    timings = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = run()
        timings.append(time.perf_counter() - start)
    return min(timings), result


def bench_case(path: Path, *, clip_s: float, num_frames: int, size: int, threads: int, repeats: int) -> dict:
    sampler = FrameSampler(num_frames, size, threads=threads)
    duration = sampler.probe(path).duration_s
    starts = np.arange(0.0, duration - 1e-6, clip_s)
    ranges = [(float(s), float(min(s + clip_s, duration))) for s in starts]
    kept = len(ranges) * num_frames

    sampler_s, clips = _best_of(repeats, lambda: sampler.sample_many(path, ranges))
    baseline_s, (reference, baseline_decoded) = _best_of(
        repeats, lambda: decode_every_frame(path, ranges, num_frames, size)
    )
    single_s, _ = _best_of(1, lambda: [sampler.sample(path, start, end) for start, end in ranges])
    same = all(
        np.array_equal(c.frames, ref) and np.array_equal(c.timestamps_s, t)
        for c, (ref, t) in zip(clips, reference, strict=True)
    )
    decoded = sum(c.frames_decoded for c in clips)
    return {
        "clips": len(ranges),
        "sampler_clips_per_s": round(len(ranges) / sampler_s, 2),
        "sampler_single_call_clips_per_s": round(len(ranges) / single_s, 2),
        "baseline_clips_per_s": round(len(ranges) / baseline_s, 2),
        "speedup": round(baseline_s / sampler_s, 2),
        "frames_decoded_per_kept": round(decoded / kept, 2),
        "baseline_frames_decoded_per_kept": round(baseline_decoded / kept, 2),
        "same_frames_as_baseline": same,
        "frames_kept": kept,
        "frames_decoded": decoded,
        "baseline_frames_decoded": baseline_decoded,
        "sampler_s": round(sampler_s, 3),
        "baseline_s": round(baseline_s, 3),
    }


def run(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark and returns its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--gops", default="250,25", help="keyframe intervals to test, in frames")
    parser.add_argument("--clip-s", type=float, default=20.0)
    parser.add_argument("--num-frames", type=int, default=12)
    parser.add_argument("--frame-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=0, help="decoder threads, 0 = one per core")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    cases = []
    with tempfile.TemporaryDirectory(prefix="bench-sampler-") as tmp:
        for gop in (int(g) for g in args.gops.split(",")):
            path = Path(tmp) / f"gop{gop}.mp4"
            make_h264(path, seconds=args.seconds, fps=args.fps, size=args.size, gop=gop)
            case = bench_case(
                path,
                clip_s=args.clip_s,
                num_frames=args.num_frames,
                size=args.frame_size,
                threads=args.threads,
                repeats=args.repeats,
            )
            cases.append({"gop": gop, **case})

    clips = sum(c["clips"] for c in cases)
    sampler_s = sum(c["sampler_s"] for c in cases)
    baseline_s = sum(c["baseline_s"] for c in cases)
    kept = sum(c["frames_kept"] for c in cases)
    result = {
        "sampler_clips_per_s": round(clips / sampler_s, 2),
        "baseline_clips_per_s": round(clips / baseline_s, 2),
        "speedup": round(baseline_s / sampler_s, 2),
        "frames_decoded_per_kept": round(sum(c["frames_decoded"] for c in cases) / kept, 2),
        "baseline_frames_decoded_per_kept": round(sum(c["baseline_frames_decoded"] for c in cases) / kept, 2),
        "cases": cases,
        "settings": {
            "video": f"{args.size} H.264 testsrc2, {args.seconds} s at {args.fps} fps",
            "gops": args.gops,
            "clip_s": args.clip_s,
            "num_frames": args.num_frames,
            "frame_size": args.frame_size,
            "threads": args.threads,
            "repeats": args.repeats,
            "cpus": os.cpu_count(),
            "pyav": av.__version__,
        },
    }
    return result


def main(argv: Sequence[str] | None = None) -> None:
    print(json.dumps(run(argv), indent=2))


if __name__ == "__main__":
    main()

"""Online re-indexing: how fast ``vidsearch reindex`` re-embeds, beside how fast ingest embedded.

``python -m bench.reindex --json`` starts the local stack (separate processes, a real redis-server)
with the tiny model, ingests ``--videos`` generated videos of ``--seconds-per-video`` seconds cut
into ``--window`` second clips through the ingest service, then re-indexes to a second tiny model
(8 frames a clip, 32-d) with the same ``migrate_stack`` and re-embedding filler that ``vidsearch
reindex`` runs, while ``--clients`` closed-loop clients search by text. It prints clips per second
of the ingest and of the re-embedding (from the first fill to the switch: filling and reconcile
passes), the phases' durations, and per stretch (before, during, after the re-index) the searches,
errors, partial results and p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import tempfile
import time
from pathlib import Path

import grpc

from bench.soak import QueryMix, SearchLoad, summarise
from services.common import settings
from services.index.migrate import MigrationOptions, Progress
from services.ingest.reembed import reembed_filler
from services.ingest.settings import IngestSettings
from services.local.migrations import migrate_stack
from services.local.stack import LocalStack, StackConfig
from tests.media import make_video
from tests.system.stack import ingest_and_wait
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

PATTERNS = ("testsrc2", "smptebars", "rgbtestsrc", "testsrc")


def run(args: argparse.Namespace) -> dict:
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import tiny

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        default = save_checkpoint(build_model(tiny()), root / "default")
        second = save_checkpoint(build_model(dataclasses.replace(tiny(), num_frames=8, embed_dim=32)), root / "second")
        library = root / "library"
        library.mkdir()
        videos = [make_video(library / f"v{n}.mp4", seconds=args.seconds_per_video, fps=10, size=(160, 120),
                             pattern=PATTERNS[n % len(PATTERNS)]) for n in range(args.videos)]
        config = StackConfig(data_dir=root / "stack", checkpoint=default, n_shards=args.shards,
                             extra_env={"VIDSEARCH_INGEST_ALLOWED_ROOTS": str(library)})
        with LocalStack(config) as stack, grpc.insecure_channel(stack.ingest.address) as channel:
            ingest = ingest_pb2_grpc.IngestServiceStub(channel)
            started = time.monotonic()
            jobs = [ingest_and_wait(ingest, v, f"video-{n}", args.window) for n, v in enumerate(videos)]
            ingest_s = time.monotonic() - started
            assert all(j.state == ingest_pb2.JOB_STATE_SUCCEEDED for j in jobs), [j.error for j in jobs]
            clips = sum(j.clips_total for j in jobs)
            cfg = settings.load(IngestSettings, "VIDSEARCH_INGEST", stack.ingest_process().env)
            mix = QueryMix(("text",), text_pool=None)
            phase_started: dict[str, float] = {}

            def progress(p: Progress) -> None:
                phase_started.setdefault(p.phase, time.monotonic())
            with SearchLoad(stack.gateway.address, mix, clients=args.clients, timeout_s=5) as load:
                time.sleep(args.load_seconds)
                t0 = time.monotonic()
                report = asyncio.run(migrate_stack(
                    stack, checkpoint=second, n_shards=args.shards, replicas=None,
                    make_filler=functools.partial(reembed_filler, cfg),
                    options=MigrationOptions(concurrency=args.concurrency, grace_s=args.grace_seconds),
                    progress=progress))
                t1 = time.monotonic()
                time.sleep(args.load_seconds)
                t2 = time.monotonic()
            calls = load.calls()
    phases = {"before": [c for c in calls if c.started < t0], "during": [c for c in calls if t0 <= c.started < t1],
              "after": [c for c in calls if t1 <= c.started < t2]}
    spans = {"before": t0 - min((c.started for c in calls), default=t0 - 1), "during": t1 - t0, "after": t2 - t1}
    marks = [*sorted((at, phase) for phase, at in phase_started.items()), (t1, "end")]
    phase_s = {phase: round(marks[i + 1][0] - at, 1) for i, (at, phase) in enumerate(marks[:-1])}
    reembed_s = phase_started.get("switching", t1) - phase_started.get("filling", t0)
    return {
        "videos": args.videos, "clips": clips, "shards": args.shards,
        "ingest_s": round(ingest_s, 1), "ingest_clips_per_s": round(clips / ingest_s, 2),
        "reindex_s": round(report.seconds, 1), "with_start_and_stop_s": round(t1 - t0, 1),
        "starting_new_generation_s": round(phase_started.get("registering", t0) - t0, 1), "phases_s": phase_s,
        "reembed_s": round(reembed_s, 1), "reembed_clips_per_s": round(clips / max(reembed_s, 1e-9), 2),
        "clips_written": report.progress.clips_written,
        "passes": {"before_switch": report.pre_switch_passes, "after_switch": report.post_switch_passes},
        # Text searches only: the per-kind breakdown would repeat the totals.
        "searches": {name: {k: v for k, v in summarise(phase, spans[name]).items() if k != "by_kind"}
                     for name, phase in phases.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds-per-video", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=4.0, help="clip length, seconds")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=MigrationOptions.concurrency)
    parser.add_argument("--grace-seconds", type=float, default=MigrationOptions.grace_s)
    parser.add_argument("--load-seconds", type=float, default=10.0, help="search load before and after the re-index")
    print(json.dumps(run(parser.parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()

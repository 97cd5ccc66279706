"""Soak: concurrent text, image and clip-id searches through the gateway while ingest keeps running.

``python -m bench.soak --minutes N --json`` starts the local stack (every service its own process
on loopback, a real redis-server, the tiny model), ingests a seed corpus, then for N minutes runs
``--clients`` closed-loop searchers mixing the three query kinds while one ingest loop keeps adding
videos (and deleting the oldest, so the index size stays level). It prints one JSON object: total
requests and errors (target 0), p50/p99 overall and per query kind, what ingest did, and the
resident memory (VmRSS from /proc/<pid>/status) of every service process after the warm-up and at
the end (target: growth under 10%). The machine's load average is included, since other work on the
CPUs moves every latency figure.

With ``--faults`` (chaos), after the warm-up a random service (a shard replica, the encoder, the
ingest server with its workers, or Redis) is SIGKILLed and restarted every ``--fault-every-s``
seconds; the JSON then also has the faults, ``partial_fraction``, latencies with and without a
fault under way, ``acked_clips_lost`` (clips of videos whose job SUCCEEDED and which were not
deleted, missing from a replica; target 0) and ``extra_clips`` (clips no such video explains:
left over from failed or deleted jobs; target 0).

``QueryMix`` and ``SearchLoad`` are the same load the system tests (``tests/system``) put on the
stack while they kill, stop and restart services.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from bench.gateway import WORDS
from services.common.clip_ids import clip_id_for
from services.common.server import client_options
from services.common.shards import shard_for_video
from services.ingest.segmenting import fixed_windows
from services.local.processes import ServiceProcess
from services.local.stack import LocalStack, StackConfig
from services.media.frames import thumbnail_jpeg
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vidsearch.index.v1 import index_pb2, index_pb2_grpc
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

KINDS = ("text", "image", "clip")


def noise_images(count: int, size: int = 64, seed: int = 0) -> list[bytes]:
    """Distinct small JPEGs of random blocks, encoded the way thumbnails are."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(count, 8, 8, 3), dtype=np.uint8)
    return [thumbnail_jpeg(np.kron(b, np.ones((size // 8, size // 8, 1), np.uint8))) for b in blocks]


class QueryMix:
    """A deterministic rotation of gateway searches over ``kinds`` (text, image, clip).

    Texts come from a pool of ``text_pool`` word combinations, so repeats hit the query cache; with
    ``text_pool=None`` every text is new and must reach the encoder. Images rotate through
    ``images`` and clip-id searches ("more like this") through ``clip_ids``.
    """

    def __init__(self, kinds: Sequence[str] = KINDS, *, images: Sequence[bytes] = (), clip_ids: Sequence[str] = (),
                 text_pool: int | None = 500, top_k: int = 10) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
        if "image" in kinds and not images:
            raise ValueError("image searches need images")
        if "clip" in kinds and not clip_ids:
            raise ValueError("clip-id searches need clip ids")
        self.kinds = tuple(kinds)
        self.images = list(images)
        self.clip_ids = list(clip_ids)
        self.text_pool = text_pool
        self.top_k = top_k

    def text(self, n: int) -> str:
        k = n if self.text_pool is None else n % self.text_pool
        words = " ".join(WORDS[(k * 7 + j * (3 + k % 5)) % len(WORDS)] for j in range(4))
        return f"{words} {k}"

    def request(self, n: int) -> tuple[str, gateway_pb2.SearchRequest]:
        """The ``n``-th query: its kind and the request."""
        kind = self.kinds[n % len(self.kinds)]
        i = n // len(self.kinds)
        if kind == "text":
            return kind, gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text=self.text(i)), top_k=self.top_k)
        if kind == "image":
            return kind, gateway_pb2.SearchRequest(image=self.images[i % len(self.images)], top_k=self.top_k)
        return kind, gateway_pb2.SearchRequest(clip_id=self.clip_ids[i % len(self.clip_ids)], top_k=self.top_k)


@dataclass(frozen=True, slots=True)
class Call:
    """One search as a client saw it; times are ``time.monotonic()`` seconds."""

    kind: str
    started: float
    ended: float
    code: str  # the gRPC status name, "OK" on success
    partial: bool = False
    cache_hit: bool = False
    failed_shards: tuple[str, ...] = ()
    details: str = ""

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class SearchLoad:
    """``clients`` closed-loop searchers against a gateway, in a background thread, recording every call.

    Each client sends the next query of ``mix`` as soon as its last one returned (after ``think_s``),
    with a deadline of ``timeout_s``. Use as a context manager, or ``start()`` and ``stop()``.
    """

    address: str
    mix: QueryMix
    clients: int = 8
    timeout_s: float = 5.0
    think_s: float = 0.0
    _calls: list[Call] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> SearchLoad:
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), name="search-load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Call]:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 30)
            if self._thread.is_alive():
                raise RuntimeError("search clients did not stop")
        return self.calls()

    def calls(self, since: float | None = None) -> list[Call]:
        """The calls recorded so far (those started at or after ``since``)."""
        with self._lock:
            calls = list(self._calls)
        return calls if since is None else [c for c in calls if c.started >= since]

    def wait_for(self, n: int, timeout_s: float = 60.0, since: float | None = None) -> list[Call]:
        """Blocks until ``n`` calls (started at or after ``since``) have finished."""
        deadline = time.monotonic() + timeout_s
        while len(calls := self.calls(since)) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(calls)} of {n} searches finished in {timeout_s}s")
            time.sleep(0.05)
        return calls

    def __enter__(self) -> SearchLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _run(self) -> None:
        async with grpc.aio.insecure_channel(self.address, options=client_options()) as channel:
            stub = gateway_pb2_grpc.SearchServiceStub(channel)
            await asyncio.gather(*(self._client(stub, c) for c in range(self.clients)))

    async def _client(self, stub: gateway_pb2_grpc.SearchServiceStub, client: int) -> None:
        n = client
        while not self._stopping.is_set():
            kind, request = self.mix.request(n)
            n += self.clients
            t0 = time.monotonic()
            try:
                reply = await stub.Search(request, timeout=self.timeout_s)
                call = Call(kind, t0, time.monotonic(), "OK", reply.partial, reply.timings.cache_hit,
                            tuple(reply.failed_shards))
            except grpc.aio.AioRpcError as exc:
                call = Call(kind, t0, time.monotonic(), exc.code().name, details=exc.details() or "")
            with self._lock:
                self._calls.append(call)
            if self.think_s:
                await asyncio.sleep(self.think_s)


# ---------------------------------------------------------------------------------------------- memory


def rss_kib(pid: int) -> int:
    """Resident memory of one process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (the ingest worker's decode pool, for one)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def service_pids(stack: LocalStack) -> dict[str, int]:
    """Every service process of the stack by name (shards, encoder, ingest, gateway, redis)."""
    pids: dict[str, int] = {}
    for i, replicas in enumerate(stack.replicas):
        for r, shard in enumerate(replicas):
            pids[f"shard-{i}" if r == 0 else f"shard-{i}-replica-{r}"] = shard.proc.pid
    named: Iterable[tuple[str, ServiceProcess | None]] = (
        ("encoder", stack.encoder), ("ingest", stack.ingest), ("gateway", stack.gateway))
    for name, proc in named:
        if proc is not None and proc.proc is not None:
            pids[name] = proc.proc.pid
    for k, spare in enumerate(stack.encoder_spares, start=1):
        if spare.proc is not None:
            pids[f"encoder-{k}"] = spare.proc.pid
    if stack.redis is not None and stack.redis.proc is not None:
        pids["redis"] = stack.redis.proc.pid
    return pids


def memory_snapshot(stack: LocalStack) -> dict[str, int]:
    """VmRSS in KiB of every service process, plus the ingest decode processes together."""
    pids = service_pids(stack)
    snapshot = {name: rss_kib(pid) for name, pid in pids.items()}
    if "ingest" in pids:
        snapshot["ingest-decoders"] = sum(rss_kib(p) for p in child_pids(pids["ingest"]))
    return snapshot


# ---------------------------------------------------------------------------------------------- the run


def _percentiles(seconds: Sequence[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None}
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def summarise(calls: Sequence[Call], elapsed_s: float) -> dict:
    """Totals, error codes and latency percentiles, overall and per query kind."""
    errors = [c for c in calls if not c.ok]
    by_kind = {}
    for kind in sorted({c.kind for c in calls}):
        mine = [c for c in calls if c.kind == kind]
        by_kind[kind] = {"requests": len(mine), "errors": sum(not c.ok for c in mine),
                         **_percentiles([c.seconds for c in mine if c.ok])}
    return {
        "requests": len(calls), "errors": len(errors),
        "error_codes": dict(collections.Counter(c.code for c in errors)),
        "error_examples": sorted({f"{c.code}: {c.details}"[:200] for c in errors})[:5],
        "partial_results": sum(c.partial for c in calls),
        "qps": round(len(calls) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        **_percentiles([c.seconds for c in calls if c.ok]),
        "by_kind": by_kind,
    }


def memory_growth(start: dict[str, int], end: dict[str, int]) -> dict[str, dict[str, float]]:
    return {name: {"start_mib": round(start[name] / 1024, 1), "end_mib": round(end[name] / 1024, 1),
                   "growth_pct": round(100 * (end[name] - start[name]) / start[name], 1) if start[name] else 0.0}
            for name in start if name in end}


def make_video(path: Path, seconds: int, fps: int = 5, size: str = "160x120") -> Path:
    from bench.ingest import make_h264

    make_h264(path, seconds=seconds, fps=fps, size=size)
    return path


class IngestLoop:
    """Keeps ingesting ``video`` under new ids, one job at a time, deleting all but the newest ``keep``.

    It rides out faults: a call that fails is retried, and a job is followed to its final state even
    when the ingest server it was watched through dies. ``acked`` holds every video whose job
    SUCCEEDED and which was not deleted since, with its length, for the end-of-run check.
    """

    def __init__(self, address: str, video: Path, window_s: float, keep: int = 4) -> None:
        self.address = address
        self.video = video
        self.window_s = window_s
        self.keep = keep
        self.stats = collections.Counter()
        self.errors: list[str] = []
        self.acked: dict[str, float] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-loop", daemon=True)

    def start(self) -> IngestLoop:
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stopping.set()
        self._thread.join(timeout=600)
        return {**self.stats, "errors": len(self.errors), "error_examples": self.errors[:5]}

    def _retried(self, call, what: str, give_up_s: float = 600.0):
        """``call()`` until it succeeds; each failure is counted (the service may be restarting)."""
        deadline = time.monotonic() + give_up_s
        while True:
            try:
                return call()
            except grpc.RpcError as exc:
                self.stats["rpc_errors"] += 1
                self.errors.append(f"{what}: {exc.code().name} {exc.details()}")
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def _final(self, api: ingest_pb2_grpc.IngestServiceStub, job_id: str) -> ingest_pb2.Job:
        def watch() -> ingest_pb2.Job:
            return [u.job for u in api.WatchJob(ingest_pb2.WatchJobRequest(job_id=job_id), timeout=600)][-1]

        while True:
            job = self._retried(watch, f"watch {job_id}")
            if job.state in (ingest_pb2.JOB_STATE_SUCCEEDED, ingest_pb2.JOB_STATE_FAILED,
                             ingest_pb2.JOB_STATE_CANCELLED):
                return job

    def _run(self) -> None:
        live: collections.deque[str] = collections.deque()
        n = 0
        with grpc.insecure_channel(self.address, options=client_options()) as channel:
            api = ingest_pb2_grpc.IngestServiceStub(channel)
            while not self._stopping.is_set():
                video_id = f"soak-{n:06d}"
                n += 1
                reply = self._retried(lambda v=video_id: api.SubmitVideo(ingest_pb2.SubmitVideoRequest(
                    uri=str(self.video), video_id=v,
                    segment=ingest_pb2.SegmentOptions(window_seconds=self.window_s)), timeout=30), "submit")
                job = self._final(api, reply.job_id)
                if job.state != ingest_pb2.JOB_STATE_SUCCEEDED:
                    self.stats["jobs_failed"] += 1
                    self.errors.append(f"{video_id}: {ingest_pb2.JobState.Name(job.state)} {job.error}")
                    continue
                self.stats["jobs_succeeded"] += 1
                self.stats["clips_ingested"] += job.clips_done
                self.acked[video_id] = job.video_seconds
                live.append(video_id)
                while len(live) > self.keep:
                    old = live.popleft()
                    deleted = self._retried(lambda v=old: api.DeleteVideo(
                        ingest_pb2.DeleteVideoRequest(video_id=v), timeout=60), f"delete {old}")
                    del self.acked[old]
                    self.stats["videos_deleted"] += 1
                    self.stats["clips_deleted"] += deleted.clips_deleted


class FaultSchedule:
    """Every ``every_s`` (a uniform range) seconds, SIGKILLs one random service of the stack and
    starts it again: a shard replica (a whole shard when there is one copy), the encoder, the
    ingest server with its workers, or Redis."""

    def __init__(self, stack: LocalStack, every_s: tuple[float, float], seed: int = 0) -> None:
        self.stack = stack
        self.every_s = every_s
        self.rng = random.Random(seed)
        self.events: list[dict] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)

    def start(self) -> FaultSchedule:
        self._thread.start()
        return self

    def stop(self) -> list[dict]:
        self._stopping.set()
        self._thread.join(timeout=300)
        return self.events

    def windows(self, settle_s: float = 5.0) -> list[tuple[float, float]]:
        """(killed, back + settle_s) of every fault, in ``time.monotonic()`` seconds."""
        return [(e["killed"], e["back"] + settle_s) for e in self.events if "back" in e]

    def _kill_and_restart(self, target: str) -> None:
        stack = self.stack
        if target.startswith("shard-"):
            shard, replica = (int(x) for x in target.removeprefix("shard-").split("/"))
            stack.replicas[shard][replica].kill()
            stack.restart_shard(shard, replica=replica)
        elif target == "redis":
            assert stack.redis is not None
            stack.redis.stop(signal.SIGKILL)
            stack.redis.start()
        elif target.startswith("encoder"):
            copy = int(target.partition("/")[2] or 0)
            (stack.encoder if copy == 0 else stack.encoder_spares[copy - 1]).kill()
            stack.restart_encoder(copy=copy)
        else:
            assert stack.ingest is not None
            stack.ingest.kill()
            stack.restart_ingest()

    def _run(self) -> None:
        stack = self.stack
        targets = [f"shard-{i}/{r}" for i in range(len(stack.replicas)) for r in range(len(stack.replicas[i]))]
        targets += [f"encoder/{k}" if stack.encoder_spares else "encoder"
                    for k in range(1 + len(stack.encoder_spares))] + ["ingest", "redis"]
        while not self._stopping.wait(self.rng.uniform(*self.every_s)):
            target = self.rng.choice(targets)
            event = {"target": target, "killed": time.monotonic()}
            self.events.append(event)
            try:
                self._kill_and_restart(target)
                event["back"] = time.monotonic()
                event["down_s"] = round(event["back"] - event["killed"], 2)
            except Exception as exc:  # noqa: BLE001 - recorded in the result; the run goes on
                event["error"] = repr(exc)


def acked_clip_check(stack: LocalStack, acked: dict[str, float], window_s: float) -> dict[str, int]:
    """Clips of acknowledged, undeleted videos missing on any replica, and clips no such video explains."""
    expected: dict[int, list[str]] = collections.defaultdict(list)
    for video_id, seconds in acked.items():
        shard = shard_for_video(video_id, len(stack.replicas))
        expected[shard] += [clip_id_for(video_id, w.start_s) for w in fixed_windows(seconds, window_s)]
    lost = extra = 0
    for shard, copies in enumerate(stack.replicas):
        for proc in copies:
            with grpc.insecure_channel(proc.address, options=client_options()) as channel:
                index = index_pb2_grpc.IndexServiceStub(channel)
                ids = expected[shard]
                lost += len(index.Get(index_pb2.GetRequest(clip_ids=ids), timeout=60).missing_ids) if ids else 0
                extra += index.Stats(index_pb2.StatsRequest(), timeout=30).live - len(ids)
    return {"acked_clips_lost": lost, "extra_clips": extra}


def seed_corpus(stack: LocalStack, video: Path, n_videos: int, window_s: float,
                acked: dict[str, float] | None = None) -> list[str]:
    """Ingests ``video`` under ``n_videos`` ids and returns the clip ids it made (``acked``: each
    video's length, by id)."""
    with grpc.insecure_channel(stack.ingest.address, options=client_options()) as channel:
        api = ingest_pb2_grpc.IngestServiceStub(channel)
        replies = [api.SubmitVideo(ingest_pb2.SubmitVideoRequest(
            uri=str(video), video_id=f"seed-{i:03d}", segment=ingest_pb2.SegmentOptions(window_seconds=window_s)),
            timeout=30) for i in range(n_videos)]
        clip_ids = []
        for reply in replies:
            job = [u.job for u in api.WatchJob(ingest_pb2.WatchJobRequest(job_id=reply.job_id), timeout=600)][-1]
            if job.state != ingest_pb2.JOB_STATE_SUCCEEDED:
                raise RuntimeError(f"seeding {reply.video_id} failed: {job.error}")
            if acked is not None:
                acked[reply.video_id] = job.video_seconds
            windows = fixed_windows(job.video_seconds, window_s)
            clip_ids += [clip_id_for(reply.video_id, w.start_s) for w in windows]
    return clip_ids


def run(args: argparse.Namespace) -> dict:
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import tiny

    duration_s = args.minutes * 60
    warmup_s = args.warmup_s if args.warmup_s is not None else min(60.0, 0.2 * duration_s)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        root = Path(tmp)
        checkpoint = save_checkpoint(build_model(tiny()), root / "ckpt")
        videos = root / "videos"
        videos.mkdir()
        seed_video = make_video(videos / "seed.mp4", seconds=40)
        ingest_video = make_video(videos / "ingest.mp4", seconds=args.ingest_video_seconds)
        env = {"VIDSEARCH_INGEST_ALLOWED_ROOTS": str(videos)}
        if args.faults:  # a killed worker's job is taken over after 5 s rather than a minute
            env["VIDSEARCH_INGEST_CLAIM_IDLE_MS"] = "5000"
        config = StackConfig(data_dir=root / "stack", checkpoint=checkpoint, n_shards=args.shards,
                             replicas=args.replicas, encoders=args.encoders, log_level="WARNING", extra_env=env)
        with LocalStack(config) as stack:
            seeded: dict[str, float] = {}
            clip_ids = seed_corpus(stack, seed_video, args.seed_videos, args.window_s, seeded)
            mix = QueryMix(images=noise_images(64), clip_ids=clip_ids)
            load = SearchLoad(stack.gateway.address, mix, clients=args.clients, timeout_s=args.timeout_s)
            ingest = IngestLoop(stack.ingest.address, ingest_video, args.window_s)
            load_start = os.getloadavg()
            t0 = time.monotonic()
            faults = FaultSchedule(stack, tuple(float(x) for x in args.fault_every_s.split(","))) \
                if args.faults else None
            load.start()
            ingest.start()
            time.sleep(warmup_s)
            memory_start = memory_snapshot(stack)
            if faults is not None:
                faults.start()
            time.sleep(max(0.0, duration_s - warmup_s))
            events = faults.stop() if faults is not None else []
            memory_end = memory_snapshot(stack)
            calls = load.stop()
            elapsed = time.monotonic() - t0
            ingested = ingest.stop()
            integrity = acked_clip_check(stack, {**seeded, **ingest.acked}, args.window_s) if args.faults else {}
            load_end = os.getloadavg()
    growth = memory_growth(memory_start, memory_end)
    faulted = {}
    if args.faults:
        windows = faults.windows()
        during = [c for c in calls if any(a <= c.started <= b for a, b in windows)]
        calm = [c for c in calls if not any(a <= c.started <= b for a, b in windows)]
        faulted = {
            "faults": [{k: (round(v - t0, 1) if k in ("killed", "back") else v) for k, v in e.items()}
                       for e in events],
            "partial_fraction": round(sum(c.partial for c in calls) / max(1, len(calls)), 4),
            "phases": {"no_fault": {"requests": len(calm), "errors": sum(not c.ok for c in calm),
                                    **_percentiles([c.seconds for c in calm if c.ok])},
                       "fault_until_5s_after_restart": {
                           "requests": len(during), "errors": sum(not c.ok for c in during),
                           "partial": sum(c.partial for c in during),
                           **_percentiles([c.seconds for c in during if c.ok])}},
            **integrity,
        }
    return {
        "minutes": args.minutes, "clients": args.clients, "shards": args.shards, "replicas": args.replicas,
        "encoders": args.encoders,
        "warmup_s": warmup_s, **summarise(calls, elapsed), **faulted,
        "ingest": ingested,
        "memory": growth,
        "max_rss_growth_pct": max(g["growth_pct"] for g in growth.values()),
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1, help="copies of each shard")
    parser.add_argument("--encoders", type=int, default=1, help="copies of the encoder (a fault kills one)")
    parser.add_argument("--faults", action="store_true",
                        help="SIGKILL and restart a random replica, the encoder, ingest or Redis, again and again")
    parser.add_argument("--fault-every-s", default="30,60", help="seconds between faults, drawn uniformly")
    parser.add_argument("--warmup-s", type=float, default=None,
                        help="seconds before the start memory reading (default: 20%% of the run, at most 60)")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="deadline of every search")
    parser.add_argument("--seed-videos", type=int, default=8)
    parser.add_argument("--window-s", type=float, default=2.0, help="clip length of every ingested video")
    parser.add_argument("--ingest-video-seconds", type=int, default=30)
    args = parser.parse_args(argv)
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()

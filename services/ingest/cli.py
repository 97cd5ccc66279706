"""``vidsearch ingest PATH...``: submit videos to the ingest service and follow them to the end.

A file the service can read itself (under its allowed roots) is submitted by path; any other is
uploaded in 1 MiB chunks (the service's refusal names an ``ErrorReason`` in its status detail; the
CLI decides on that, never on the message's words). Progress shows as a bar per running video and
one for all clips, then a summary: videos, clips, seconds of video and failures. Exit status 0 when
every video succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tqdm import tqdm

from services.common import client_connection
from services.common.channels import error_reason
from services.ingest import sources
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mxf", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg",
    ".wmv", ".flv", ".3gp", ".ogv",
})
CHUNK_BYTES = 1024 * 1024
# Refusals of SubmitVideo after which the CLI, which can read the file, uploads it instead.
UPLOAD_REASONS = frozenset({sources.SOURCE_OUTSIDE_ROOTS, sources.SOURCE_NOT_FOUND, sources.SOURCE_UNREADABLE})
_FINAL = {ingest_pb2.JOB_STATE_SUCCEEDED, ingest_pb2.JOB_STATE_FAILED, ingest_pb2.JOB_STATE_CANCELLED}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds ``ingest`` to the ``vidsearch`` command line."""
    p = subparsers.add_parser("ingest", help="ingest video files through the ingest service",
                              description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", metavar="PATH", help="video files, or directories with --recursive")
    p.add_argument("--recursive", "-r", action="store_true", help="ingest the videos found under directories")
    p.add_argument("--segment", choices=("fixed", "shots"), default="fixed",
                   help="fixed windows, or segments aligned to shot boundaries (default: fixed)")
    p.add_argument("--window", type=float, default=0.0, help="window / longest segment in seconds (default: 20)")
    p.add_argument("--overlap", type=float, default=0.0, help="overlap of fixed windows in seconds")
    p.add_argument("--title", default="", help="title stored with every clip")
    p.add_argument("--programme", default="", help="programme stored with every clip")
    p.add_argument("--air-date", default="", help="air date (YYYY-MM-DD) stored with every clip")
    p.add_argument("--tag", action="append", default=[], help="tag for every clip (repeatable)")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="extra metadata (repeatable)")
    p.add_argument("--video-id", default="", help="video id (one file only; default: content hash)")
    p.add_argument("--id-from-name", action="store_true", help="use each file's name (without extension) as its id")
    p.add_argument("--upload", action="store_true", help="always upload, even files the service could read")
    p.add_argument("--no-wait", action="store_true", help="submit and print the job ids without waiting")
    client_connection.add_arguments(p, "ingest")
    p.set_defaults(run=run)
    return p


@dataclass
class _Video:
    path: Path
    job_id: str = ""
    video_id: str = ""
    state: int = 0
    error: str = ""
    clips: int = 0
    clips_total: int = 0
    seconds: float = 0.0
    uploaded: bool = False


@dataclass
class _Totals:
    videos: list[_Video] = field(default_factory=list)
    bar: tqdm | None = None

    def refresh(self) -> None:
        if self.bar is not None:
            self.bar.total = sum(v.clips_total for v in self.videos) or None
            self.bar.n = sum(v.clips for v in self.videos)
            self.bar.refresh()


def collect(paths: Sequence[str], recursive: bool) -> tuple[list[Path], list[str]]:
    """The video files named (directories expanded with ``recursive``) and the problems found."""
    files: list[Path] = []
    problems: list[str] = []
    for name in paths:
        path = Path(name).expanduser()
        if path.is_dir():
            if not recursive:
                problems.append(f"{name}: is a directory (use --recursive)")
                continue
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{name}: no such file")
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique, problems


def _metadata(args: argparse.Namespace) -> ingest_pb2.VideoMetadata:
    extra = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--meta {item!r} is not KEY=VALUE")
        extra[key] = value
    return ingest_pb2.VideoMetadata(title=args.title, programme=args.programme, air_date=args.air_date,
                                    tags=args.tag, extra=extra)


async def _chunks(header: ingest_pb2.UploadHeader, path: Path,
                  bar: tqdm) -> AsyncIterator[ingest_pb2.UploadVideoRequest]:
    yield ingest_pb2.UploadVideoRequest(header=header)
    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
            bar.update(len(chunk))
            yield ingest_pb2.UploadVideoRequest(chunk=chunk)


async def _upload(stub: ingest_pb2_grpc.IngestServiceStub, requests: AsyncIterator[ingest_pb2.UploadVideoRequest],
                  md: tuple[tuple[str, str], ...]) -> ingest_pb2.UploadVideoResponse:
    """Sends an upload message by message; the reply, or the server's own status when it ends the call early.

    A server that refuses the upload (no write permission, too large) ends the call while chunks are
    still going out. Given a request iterator, grpc.aio may then report its own INTERNAL "Internal
    error from Core" instead of the server's status (grpc/grpc#36066); with explicit writes, a write to
    a call that has ended raises, and awaiting the call gives the status the server sent.
    """
    call = stub.UploadVideo(metadata=md)
    try:
        async for request in requests:
            await call.write(request)
        await call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        pass  # the call has ended: awaiting it below raises the server's status
    reply: ingest_pb2.UploadVideoResponse = await call
    return reply


def _video_id(args: argparse.Namespace, video: _Video) -> str:
    """The id to ingest under: --video-id, the file's name with --id-from-name, else the content hash."""
    return args.video_id or (video.path.stem if args.id_from_name else "")


def should_upload(err: grpc.RpcError) -> bool:
    """Whether a refused SubmitVideo means "send the bytes instead": decided on the status's ErrorReason."""
    return error_reason(err) in UPLOAD_REASONS


async def _submit(stub: ingest_pb2_grpc.IngestServiceStub, video: _Video, args: argparse.Namespace,
                  meta: ingest_pb2.VideoMetadata, segment: ingest_pb2.SegmentOptions,
                  md: tuple[tuple[str, str], ...]) -> None:
    if not args.upload:
        try:
            reply = await stub.SubmitVideo(ingest_pb2.SubmitVideoRequest(
                uri=str(video.path), video_id=_video_id(args, video), metadata=meta, segment=segment), timeout=600,
                metadata=md)
            video.job_id, video.video_id = reply.job_id, reply.video_id
            return
        except grpc.aio.AioRpcError as err:
            if not should_upload(err):
                raise
    size = video.path.stat().st_size
    header = ingest_pb2.UploadHeader(filename=video.path.name, video_id=_video_id(args, video), metadata=meta,
                                     segment=segment, size_bytes=size)
    with tqdm(total=size, unit="B", unit_scale=True, desc=f"upload {video.path.name}", leave=False,
              disable=None) as bar:
        reply = await _upload(stub, _chunks(header, video.path, bar), md)
    video.job_id, video.video_id, video.uploaded = reply.job_id, reply.video_id, True


async def _follow(stub: ingest_pb2_grpc.IngestServiceStub, video: _Video, totals: _Totals,
                  md: tuple[tuple[str, str], ...]) -> None:
    bar: tqdm | None = None
    lost = 0
    try:
        while video.state not in _FINAL:
            try:
                async for reply in stub.WatchJob(ingest_pb2.WatchJobRequest(job_id=video.job_id), metadata=md):
                    job = reply.job
                    video.state, video.error = job.state, job.error
                    video.clips, video.clips_total, video.seconds = job.clips_done, job.clips_total, job.video_seconds
                    if bar is None and job.state == ingest_pb2.JOB_STATE_RUNNING:
                        bar = tqdm(total=None, unit="clip", desc=video.path.name[:40], leave=False, disable=None)
                    if bar is not None:
                        bar.total = job.clips_total or None
                        bar.n = job.clips_done
                        bar.refresh()
                    totals.refresh()
            except grpc.aio.AioRpcError as err:
                lost += 1
                if err.code() != grpc.StatusCode.UNAVAILABLE or lost > 30:
                    video.state, video.error = ingest_pb2.JOB_STATE_FAILED, f"lost track of the job: {err.details()}"
                    return
                await asyncio.sleep(1.0)
    finally:
        if bar is not None:
            bar.close()
    status = ingest_pb2.JobState.Name(video.state).removeprefix("JOB_STATE_").lower()
    tqdm.write(f"{status:>9}  {video.path}  ({video.clips} clips, {video.seconds:.1f} s){_reason(video)}")


def _reason(video: _Video) -> str:
    return f": {video.error}" if video.error and video.state != ingest_pb2.JOB_STATE_SUCCEEDED else ""


async def _ingest(args: argparse.Namespace, connection: client_connection.ClientConnection,
                  meta: ingest_pb2.VideoMetadata, files: list[Path], problems: list[str]) -> int:
    mode = ingest_pb2.SEGMENT_MODE_SHOTS if args.segment == "shots" else ingest_pb2.SEGMENT_MODE_FIXED
    segment = ingest_pb2.SegmentOptions(mode=mode, window_seconds=args.window, overlap_seconds=args.overlap)
    totals = _Totals([_Video(p) for p in files])
    md = connection.metadata
    async with connection.aio_channel() as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for video in totals.videos:
            try:
                await _submit(stub, video, args, meta, segment, md)
            except grpc.aio.AioRpcError as err:
                video.state, video.error = ingest_pb2.JOB_STATE_FAILED, connection.describe_failure(err)
                tqdm.write(f"   failed  {video.path}{_reason(video)}")
        submitted = [v for v in totals.videos if v.job_id]
        if args.no_wait:
            for v in submitted:
                print(f"{v.job_id}  {v.video_id}  {v.path}")
            return 0 if len(submitted) == len(totals.videos) and not problems else 1
        with tqdm(unit="clip", desc="all videos", disable=None) as overall:
            totals.bar = overall
            await asyncio.gather(*(_follow(stub, v, totals, md) for v in submitted))
    return _summary(totals.videos, problems)


def _summary(videos: list[_Video], problems: list[str]) -> int:
    ok = [v for v in videos if v.state == ingest_pb2.JOB_STATE_SUCCEEDED]
    failed = [v for v in videos if v.state != ingest_pb2.JOB_STATE_SUCCEEDED]
    clips = sum(v.clips for v in ok)
    seconds = sum(v.seconds for v in ok)
    n_failed = len(failed) + len(problems)
    print(f"ingested {len(ok)} of {len(videos) + len(problems)} videos: {clips} clips, "
          f"{seconds:.1f} s of video, {n_failed} failure{'s' if n_failed != 1 else ''}")
    for video in failed:
        state = ingest_pb2.JobState.Name(video.state).removeprefix("JOB_STATE_").lower()
        print(f"  {state}: {video.path}{_reason(video)}")
    for problem in problems:
        print(f"  skipped: {problem}")
    return 0 if not n_failed else 1


def run(args: argparse.Namespace) -> int:
    """Runs ``vidsearch ingest``; returns the process exit status."""
    connection = client_connection.from_args(args, "ingest")
    files, problems = collect(args.paths, args.recursive)
    if args.video_id and len(files) != 1:
        print("vidsearch ingest: --video-id needs exactly one file", file=sys.stderr)
        return 2
    if not files:
        for problem in problems:
            print(f"vidsearch ingest: {problem}", file=sys.stderr)
        print("vidsearch ingest: no video files to ingest", file=sys.stderr)
        return 1
    try:
        meta = _metadata(args)
    except ValueError as exc:
        print(f"vidsearch ingest: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_ingest(args, connection, meta, files, problems))

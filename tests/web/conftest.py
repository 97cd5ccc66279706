"""One live local stack with the web app for the API and browser tests: two index shards, the
tiny-model encoder, ingest with a real redis-server, the gateway and ``services.web``, each its own
process on loopback, holding a small archive ingested through the real pipeline: plain MP4s with
metadata, an MXF whose timecode track starts at 10:00:00:00 and a 29.97 fps drop-frame MOV.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from services.local.stack import LocalStack, StackConfig
from tests.media import ffmpeg, make_video
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

WINDOW_S = 2.0
#: video id -> (file maker args, metadata)
ARCHIVE = {
    "news-0412": ("testsrc2", {"title": "9시 뉴스", "programme": "뉴스", "air_date": "2024-04-12", "tags": ["news"]}),
    "drama-0501": ("smptebars", {"title": "Studio call", "programme": "Drama", "air_date": "2024-05-01",
                                 "tags": ["drama", "studio"]}),
    "docu-0610": ("rgbtestsrc", {"title": "Nature", "programme": "Documentary", "air_date": "2023-06-10",
                                 "tags": ["docu"]}),
}
MXF_ID = "tape-mxf"
DROP_ID = "tape-df"


def make_mxf(path: Path, seconds: float = 6.0) -> Path:
    """An MXF (OP1a, MPEG-2) whose timecode track starts at 10:00:00:00, 25 fps."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=160x120:r=25:d={seconds}", "-c:v", "mpeg2video", "-g", "12",
           "-timecode", "10:00:00:00", str(path))
    return path


def make_drop_frame_mov(path: Path, seconds: float = 6.0) -> Path:
    """A 29.97 fps H.264 MOV whose tmcd track starts at 01:00:00;00 (drop-frame)."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc=s=160x120:r=30000/1001:d={seconds}", "-c:v", "libx264", "-pix_fmt",
           "yuv420p", "-g", "30", "-timecode", "01:00:00;00", str(path))
    return path


@dataclass
class WebStack:
    """The running stack, its web app's base URL, and the archive it holds."""

    stack: LocalStack
    url: str
    library: Path
    clips: dict[str, list[str]] = field(default_factory=dict)

    def get(self, path: str, headers: dict[str, str] | None = None):
        request = urllib.request.Request(self.url + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, dict(reply.headers), reply.read()

    def get_json(self, path: str):
        return json.loads(self.get(path)[2])


def ingest(address: str, path: Path, video_id: str, meta: dict | None = None) -> ingest_pb2.Job:
    meta = dict(meta or {})
    with grpc.insecure_channel(address) as channel:
        api = ingest_pb2_grpc.IngestServiceStub(channel)
        reply = api.SubmitVideo(ingest_pb2.SubmitVideoRequest(
            uri=str(path), video_id=video_id, metadata=ingest_pb2.VideoMetadata(**meta),
            segment=ingest_pb2.SegmentOptions(window_seconds=WINDOW_S)), timeout=30)
        return [u.job for u in api.WatchJob(ingest_pb2.WatchJobRequest(job_id=reply.job_id), timeout=300)][-1]


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[WebStack]:
    root = tmp_path_factory.mktemp("web")
    library = root / "library"
    library.mkdir()
    config = StackConfig(data_dir=root / "stack", checkpoint=tiny_checkpoint, n_shards=2, web_port=0,
                         extra_env={"VIDSEARCH_WEB_MAX_QUERY_BYTES": str(4 * 1024 * 1024)})
    with LocalStack(config) as stack:
        site = WebStack(stack, stack.web.url, library)
        sources = {vid: make_video(library / f"{vid}.mp4", seconds=6, fps=10, size=(96, 64), pattern=pattern, gop=10)
                   for vid, (pattern, _) in ARCHIVE.items()}
        sources[MXF_ID] = make_mxf(library / "tape.mxf")
        sources[DROP_ID] = make_drop_frame_mov(library / "tape-df.mov")
        for vid, path in sources.items():
            job = ingest(stack.ingest.address, path, vid, ARCHIVE.get(vid, ("", {}))[1])
            assert job.state == ingest_pb2.JOB_STATE_SUCCEEDED, job.error
        yield site

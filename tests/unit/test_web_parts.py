"""The web app's pure parts: gRPC -> HTTP status mapping, upload sniffing, Range, CSV and EDL export."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import grpc
import pytest

from services.web.clips import byte_range
from services.web.errors import HTTP_STATUS, ApiError
from services.web.exports import to_csv, to_edl
from services.web.security import sniff
from tests.media import make_png, make_video, skimage_photo_paths


@pytest.mark.parametrize(("code", "status"), [
    (grpc.StatusCode.INVALID_ARGUMENT, 400), (grpc.StatusCode.OUT_OF_RANGE, 400),
    (grpc.StatusCode.UNAUTHENTICATED, 401), (grpc.StatusCode.PERMISSION_DENIED, 403),
    (grpc.StatusCode.NOT_FOUND, 404), (grpc.StatusCode.FAILED_PRECONDITION, 409),
    (grpc.StatusCode.ALREADY_EXISTS, 409), (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (grpc.StatusCode.CANCELLED, 499), (grpc.StatusCode.UNIMPLEMENTED, 501),
    (grpc.StatusCode.UNAVAILABLE, 503), (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (grpc.StatusCode.INTERNAL, 500), (grpc.StatusCode.UNKNOWN, 500),
])
def test_grpc_status_maps_to_the_matching_http_status(code: grpc.StatusCode, status: int) -> None:
    assert HTTP_STATUS[code] == status


def test_every_grpc_status_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(grpc.StatusCode)


def _head(path: Path) -> bytes:
    return path.read_bytes()[:4096]


@pytest.mark.parametrize(("suffix", "kind", "fmt"), [
    (".mp4", "video", "mp4"), (".mov", "video", "mp4"), (".mkv", "video", "matroska"),
    (".webm", "video", "matroska"), (".ts", "video", "mpeg-ts"), (".avi", "video", "avi"),
    (".mxf", "video", "mxf"),
])
def test_sniff_knows_real_video_files_by_their_bytes(tmp_path: Path, suffix: str, kind: str, fmt: str) -> None:
    codec = {".webm": "libvpx-vp9", ".mxf": "mpeg2video", ".avi": "mpeg4"}.get(suffix, "libx264")
    path = make_video(tmp_path / f"v{suffix}", seconds=1, fps=25, size=(64, 48), codec=codec)
    found = sniff(_head(path))
    assert found is not None and (found.kind, found.format) == (kind, fmt)


def test_sniff_knows_real_images_and_refuses_text(tmp_path: Path) -> None:
    photos = skimage_photo_paths()[:3]
    for path in [*photos, make_png(tmp_path / "a.mp4")]:  # the name lies; the bytes do not
        assert sniff(_head(path)).kind == "image", path
    assert sniff(b"<html><script>alert(1)</script></html>") is None
    assert sniff(b"GIF") is None


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("bytes=0-99", (0, 99)), ("bytes=100-", (100, 999)), ("bytes=-10", (990, 999)),
    ("bytes=990-5000", (990, 999)), ("bytes=0-0", (0, 0)), ("bytes=0-1,5-9", None),
])
def test_range_header(header: str | None, expected) -> None:
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5-2", "items=0-1", "bytes=-", "bytes=abc"])
def test_unsatisfiable_range_is_416(header: str) -> None:
    with pytest.raises(ApiError) as info:
        byte_range(header, 1000)
    assert info.value.status == 416


HITS = [
    {"clip_id": "tape-mxf:000002000", "video_id": "tape-mxf", "score": 0.91, "title": "뉴스, \"특보\"",
     "programme": "News", "air_date": "2024-04-12", "start_seconds": 2.0, "end_seconds": 4.0,
     "source_timecode": "10:00:02:00", "source_end_timecode": "10:00:04:00", "frame_rate": "25",
     "caption": "a man, on the phone", "tags": ["news", "studio"]},
    {"clip_id": "old:000000000", "video_id": "old", "score": 0.5, "title": "", "programme": "", "air_date": "",
     "start_seconds": 0.0, "end_seconds": 20.0, "source_timecode": "", "source_end_timecode": "",
     "frame_rate": "", "caption": "", "tags": []},
]


def test_csv_round_trips_korean_and_quotes() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(HITS))))
    assert rows[0]["title"] == HITS[0]["title"] and rows[0]["source_timecode"] == "10:00:02:00"
    assert rows[0]["tags"] == "news;studio" and rows[1]["rank"] == "2"


EVENT = re.compile(r"^(\d{3})  (\S+)\s+V\s+C\s+(\S+) (\S+) (\S+) (\S+)$")


def test_edl_events_carry_source_timecodes_and_cut_end_to_end() -> None:
    edl = to_edl(HITS, "vidsearch: 뉴스")
    lines = edl.split("\r\n")
    assert lines[0] == "TITLE: vidsearch: 뉴스" and lines[1] == "FCM: NON-DROP FRAME"
    events = [EVENT.match(line).groups() for line in lines if EVENT.match(line)]
    assert events == [
        ("001", "TAPE_MXF", "10:00:02:00", "10:00:04:00", "01:00:00:00", "01:00:02:00"),
        ("002", "OLD", "00:00:00:00", "00:00:20:00", "01:00:02:00", "01:00:22:00"),
    ]
    assert "* FROM CLIP NAME: 뉴스, \"특보\"" in lines and "* CLIP ID: tape-mxf:000002000" in lines

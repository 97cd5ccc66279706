"""Request checks of the ingest API (metadata, segmentation) and the mapping of jobs to messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import InvalidInput
from services.common.settings import load
from services.ingest.pipeline import clip_metadata
from services.ingest.records import Job, JobSpec, JobStage, JobState, SegmentMode, SegmentSpec, VideoMeta
from services.ingest.servicer import job_to_proto, segment_spec, video_meta
from services.ingest.settings import IngestSettings
from vidsearch.ingest.v1 import ingest_pb2


@pytest.fixture
def cfg(tmp_path: Path) -> IngestSettings:
    return load(IngestSettings, "X", {"X_REDIS_URL": "redis://r", "X_ENCODER": "e:1", "X_INDEX_SHARDS": "i:1",
                                      "X_MEDIA_ROOT": str(tmp_path), "X_OVERLAP_SECONDS": "4"})


def test_metadata_is_cleaned_and_kept() -> None:
    meta = video_meta(ingest_pb2.VideoMetadata(title=" Nine O'Clock News ", programme="News", air_date="1999-12-31",
                                               tags=["news", " news ", "politics"], extra={"channel": "BBC1"}))
    assert meta == VideoMeta("Nine O'Clock News", "News", "1999-12-31", ("news", "politics"), {"channel": "BBC1"})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"air_date": "31/12/1999"}, "not a date in YYYY-MM-DD"),
        ({"air_date": "1999-02-30"}, "not a date in YYYY-MM-DD"),
        ({"air_date": "19991231"}, "not a date in YYYY-MM-DD"),
        ({"tags": ["ok", "  "]}, "tags must not be empty"),
        ({"tags": [f"t{i}" for i in range(101)]}, "at most 100 tags"),
        ({"extra": {"source_uri": "file:///etc/passwd"}}, "is reserved"),
        ({"extra": {"title": "x"}}, "is reserved"),
        ({"extra": {"": "x"}}, "1-100 characters"),
        ({"title": "x" * 1001}, "the limit is 1000"),
    ],
)
def test_bad_metadata_is_an_invalid_argument(fields: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        video_meta(ingest_pb2.VideoMetadata(**fields))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, SegmentSpec(SegmentMode.FIXED, 20.0, 4.0)),  # zero values take the service defaults
        ({"mode": ingest_pb2.SEGMENT_MODE_FIXED, "window_seconds": 10, "overlap_seconds": 1},
         SegmentSpec(SegmentMode.FIXED, 10.0, 1.0)),
        ({"window_seconds": 3}, SegmentSpec(SegmentMode.FIXED, 3.0, 0.0)),  # default overlap >= window: none
        ({"mode": ingest_pb2.SEGMENT_MODE_SHOTS, "overlap_seconds": 2}, SegmentSpec(SegmentMode.SHOTS, 20.0, 0.0)),
    ],
)
def test_segment_options(cfg: IngestSettings, options: dict, expected: SegmentSpec) -> None:
    assert segment_spec(ingest_pb2.SegmentOptions(**options), cfg) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window_seconds": -5}, "window_seconds must be in"),
        ({"window_seconds": 0.1}, "window_seconds must be in"),
        ({"window_seconds": float("nan")}, "window_seconds must be in"),
        ({"window_seconds": 10, "overlap_seconds": 10}, "overlap_seconds must be"),
        ({"overlap_seconds": -1}, "overlap_seconds must be"),
        ({"mode": 7}, "unknown segment mode"),
    ],
)
def test_bad_segment_options_are_invalid_arguments(cfg: IngestSettings, options: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        segment_spec(ingest_pb2.SegmentOptions(**options), cfg)


def test_job_maps_to_its_message_and_clips_carry_the_metadata() -> None:
    spec = JobSpec("vid", "file:///archive/a.mp4", VideoMeta("T", "", "2001-01-01", ("x",), {"channel": "c"}),
                   SegmentSpec())
    job = Job("j1", spec, JobState.RUNNING, JobStage.ENCODING, 3, 9, "", 2, 1_700_000_000.5, 1_700_000_001.25,
              180.0, 4)
    msg = job_to_proto(job)
    assert msg.state == ingest_pb2.JOB_STATE_RUNNING and msg.stage == ingest_pb2.JOB_STAGE_ENCODING
    assert (msg.clips_done, msg.clips_total, msg.attempts, msg.video_seconds) == (3, 9, 2, 180.0)
    assert msg.uri == "file:///archive/a.mp4" and msg.video_id == "vid"
    assert msg.created_at.seconds == 1_700_000_000 and msg.updated_at.nanos == 250_000_000
    assert clip_metadata(job) == {"title": "T", "air_date": "2001-01-01", "channel": "c",
                                  "source_uri": "file:///archive/a.mp4"}

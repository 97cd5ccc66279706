"""What an ingest job is: its request (video, metadata, segmentation) and its stored state.

Plain values, shared by the API, the queue and the workers; `Job.from_hash` reads the Redis
record that `jobs.JobQueue` writes.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field


class JobState(enum.Enum):
    """Lifecycle of a job (names match ``vidsearch.ingest.v1.JobState``)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobStage(enum.Enum):
    """The step a running job is in (names match ``vidsearch.ingest.v1.JobStage``)."""

    UNSPECIFIED = "UNSPECIFIED"
    PROBING = "PROBING"
    DECODING = "DECODING"
    ENCODING = "ENCODING"
    INDEXING = "INDEXING"
    DONE = "DONE"


class SegmentMode(enum.Enum):
    FIXED = "fixed"
    SHOTS = "shots"


@dataclass(frozen=True)
class SegmentSpec:
    """How to cut the video, with the service defaults already applied."""

    mode: SegmentMode = SegmentMode.FIXED
    window_s: float = 20.0
    overlap_s: float = 0.0


@dataclass(frozen=True)
class VideoMeta:
    """Video-level metadata copied onto every clip."""

    title: str = ""
    programme: str = ""
    air_date: str = ""
    tags: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobSpec:
    """What a job was asked to do; fixed at submission."""

    video_id: str
    source: str
    meta: VideoMeta = field(default_factory=VideoMeta)
    segment: SegmentSpec = field(default_factory=SegmentSpec)

    def to_json(self) -> str:
        return json.dumps({
            "meta": {"title": self.meta.title, "programme": self.meta.programme, "air_date": self.meta.air_date,
                     "tags": list(self.meta.tags), "extra": dict(self.meta.extra)},
            "segment": {"mode": self.segment.mode.value, "window_s": self.segment.window_s,
                        "overlap_s": self.segment.overlap_s},
        })

    @classmethod
    def from_fields(cls, video_id: str, source: str, raw: str) -> JobSpec:
        data = json.loads(raw)
        meta, seg = data["meta"], data["segment"]
        return cls(
            video_id=video_id,
            source=source,
            meta=VideoMeta(meta["title"], meta["programme"], meta["air_date"], tuple(meta["tags"]),
                           dict(meta["extra"])),
            segment=SegmentSpec(SegmentMode(seg["mode"]), float(seg["window_s"]), float(seg["overlap_s"])),
        )


@dataclass(frozen=True)
class Job:
    """A job record as stored."""

    job_id: str
    spec: JobSpec
    state: JobState
    stage: JobStage
    clips_done: int
    clips_total: int
    error: str
    attempts: int
    created_at: float
    updated_at: float
    video_seconds: float
    version: int

    @property
    def video_id(self) -> str:
        return self.spec.video_id

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Job:
        return cls(
            job_id=h["job_id"],
            spec=JobSpec.from_fields(h["video_id"], h["source"], h["spec"]),
            state=JobState(h["state"]),
            stage=JobStage(h.get("stage") or "UNSPECIFIED"),
            clips_done=int(h.get("clips_done") or 0),
            clips_total=int(h.get("clips_total") or 0),
            error=h.get("error", ""),
            attempts=int(h.get("attempts") or 0),
            created_at=float(h["created_at"]),
            updated_at=float(h.get("updated_at") or h["created_at"]),
            video_seconds=float(h.get("video_seconds") or 0.0),
            version=int(h.get("version") or 0),
        )

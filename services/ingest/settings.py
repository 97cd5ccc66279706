"""Settings of the ingest service and its workers, from VIDSEARCH_INGEST_* variables.

The API server (``python -m services.ingest``) and a standalone worker
(``python -m services.ingest.worker``) read the same variables, so one ConfigMap serves both.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from services.common import settings
from services.common.settings import SettingsError

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    """Everything the ingest API server and its workers need; validated before anything starts."""

    redis_url: str = dataclasses.field(metadata={"help": "Redis holding the job queue, e.g. redis://redis:6379/0"})
    encoder: str = dataclasses.field(metadata={"help": "address of the encoder service, e.g. encoder:50051"})
    index_shards: tuple[str, ...] = dataclasses.field(
        metadata={"help": "comma-separated index shard addresses, in shard-number order; a shard's "
                          "replicas separated by |"}
    )
    # Shared volume for thumbnails and uploaded videos; the gateway mounts the same one. Required
    # rather than defaulted so thumbnails never land silently in a directory the gateway cannot see.
    media_root: Path = dataclasses.field(metadata={"help": "directory of the media store (thumbnails, uploads)"})
    # Directories SubmitVideo may read from; empty refuses every path (uploads still work).
    allowed_roots: tuple[Path, ...] = ()
    max_upload_bytes: int = 8 * 1024**3
    # Namespace of every Redis key, so several deployments (or tests) can share one Redis.
    key_prefix: str = "vidsearch"
    # Worker tasks inside the API server process; 0 leaves the work to standalone workers.
    workers: int = 0
    # Delivery attempts of one job (worker losses and transient errors) before it is dead-lettered.
    max_attempts: int = 5
    # A job whose worker has not renewed its claim for this long is taken over by another worker.
    claim_idle_ms: int = 60_000
    # Backoff before retrying after a transient error: base * 2^(attempt-1), capped.
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    # Processes decoding and sampling video; 0 means one per CPU core (at most 8).
    decode_processes: int = 0
    # Clips per task sent to a decode process (one open and seek per task).
    decode_chunk_clips: int = 4
    # Clips per EncodeVideos call (12 frames at 224 px is 1.8 MB a clip; 16 stay under 32 MB).
    encode_batch_clips: int = 16
    # Clips waiting between stages; bounds memory and makes a slow stage hold back the others.
    queue_clips: int = 32
    # Replicas of a shard that must store a write before it counts; 0 = all of them. Below all, a
    # replica that was down misses acknowledged writes and nothing catches it up yet.
    index_write_quorum: int = 0
    # Deadline of every call to the encoder and the index.
    rpc_timeout_seconds: float = 120.0
    thumbnail_max_side: int = 320
    # How long a finished job's record stays readable in Redis.
    job_ttl_seconds: int = 7 * 24 * 3600
    # Segmentation defaults; a request's zero values take these.
    # Fixed window length, and the longest segment in shot mode (CLIP4Clip uses 20 s).
    window_seconds: float = 20.0
    # Overlap between consecutive fixed windows.
    overlap_seconds: float = 0.0
    # A last partial window shorter than this is merged into the previous clip instead of
    # becoming a clip of its own (see `segmenting.fixed_windows`).
    min_clip_seconds: float = 2.0
    # Shot mode: shots shorter than this are merged into a neighbour.
    min_shot_seconds: float = 2.0
    # Shot mode: least colour-histogram distance (0..1) between consecutive frames that can be a cut
    # (it must also stand out from the recent frames; see `segmenting._CutFinder`).
    shot_threshold: float = 0.15
    # One "<key> <read|write>" per line; unset disables API keys (loopback development only).
    # Submitting, uploading, cancelling and deleting need a write key.
    api_keys_file: Path | None = None
    # The Redis password, from a file (a mounted Secret) rather than in redis_url; the URL may name
    # the user (redis://vidsearch@redis:6379/0).
    redis_password_file: Path | None = None
    server: settings.ServerSettings = dataclasses.field(default_factory=settings.ServerSettings)

    def __post_init__(self) -> None:
        if not self.redis_url.startswith(_REDIS_SCHEMES):
            raise SettingsError(f"redis_url must start with one of {_REDIS_SCHEMES}, got {self.redis_url!r}")
        settings.check_redis_password_file(self.redis_url, self.redis_password_file)
        if not self.encoder.strip():
            raise SettingsError("encoder address must not be empty")
        if not self.index_shards or any(not s.strip() for s in self.index_shards):
            raise SettingsError("index_shards must list at least one address, none empty")
        roots = []
        for root in self.allowed_roots:
            if not root.is_absolute():
                raise SettingsError(f"allowed root {root} must be an absolute path")
            if not root.is_dir():
                raise SettingsError(f"allowed root {root} is not an existing directory")
            roots.append(Path(os.path.realpath(root)))
        object.__setattr__(self, "allowed_roots", tuple(roots))
        positive = ("max_upload_bytes", "max_attempts", "decode_chunk_clips", "encode_batch_clips",
                    "queue_clips", "thumbnail_max_side", "job_ttl_seconds")
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be >= 1, got {getattr(self, name)}")
        replicas = min(len(s.split("|")) for s in self.index_shards)
        if not 0 <= self.index_write_quorum <= replicas:
            raise SettingsError(f"index_write_quorum must be in 0..{replicas} (the replicas of a shard), "
                                f"got {self.index_write_quorum}")
        if self.workers < 0 or self.decode_processes < 0:
            raise SettingsError("workers and decode_processes must be >= 0")
        if self.claim_idle_ms < 300:
            raise SettingsError(f"claim_idle_ms must be >= 300, got {self.claim_idle_ms}")
        if self.retry_base_seconds < 0 or self.retry_max_seconds < self.retry_base_seconds:
            raise SettingsError("retry_base_seconds must be >= 0 and <= retry_max_seconds")
        if self.rpc_timeout_seconds <= 0:
            raise SettingsError("rpc_timeout_seconds must be > 0")
        if not 0 < self.window_seconds <= 3600:
            raise SettingsError(f"window_seconds must be in (0, 3600], got {self.window_seconds}")
        if not 0 <= self.overlap_seconds < self.window_seconds:
            raise SettingsError(f"overlap_seconds must be in [0, window_seconds), got {self.overlap_seconds}")
        if self.min_clip_seconds < 0 or self.min_shot_seconds < 0:
            raise SettingsError("min_clip_seconds and min_shot_seconds must be >= 0")
        if not 0 < self.shot_threshold < 1:
            raise SettingsError(f"shot_threshold must be in (0, 1), got {self.shot_threshold}")
        if not self.key_prefix or any(c.isspace() for c in self.key_prefix):
            raise SettingsError(f"key_prefix must be a non-empty word, got {self.key_prefix!r}")

    @property
    def n_decode_processes(self) -> int:
        return self.decode_processes or min(os.cpu_count() or 1, 8)


def load_or_exit() -> IngestSettings:
    return settings.load_or_exit(IngestSettings, "VIDSEARCH_INGEST")

"""Settings of the ingest service and its workers, from VIDSEARCH_INGEST_* variables.

The API server (``python -m services.ingest``) and a standalone worker
(``python -m services.ingest.worker``) read the same variables, so one ConfigMap serves both.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from services.common import settings
from services.common.settings import SettingsError, setting

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    """Everything the ingest API server and its workers need; validated before anything starts."""

    redis_url: str = setting(doc="Redis holding the job queue, e.g. redis://redis:6379/0 (rediss:// and unix:// too).")
    encoder: str = setting(doc="Address of the encoder service, e.g. encoder:50051 or dns:///encoder:50051.")
    index_shards: tuple[str, ...] = setting(
        doc="Comma-separated index shard addresses, in shard-number order; a shard's replicas separated by |.")
    # Required rather than defaulted so thumbnails never land silently where the gateway cannot see them.
    media_root: Path = setting(
        doc="Directory of the media store (thumbnails, uploads); the gateway mounts the same volume.")
    allowed_roots: tuple[Path, ...] = setting(
        (), "Comma-separated directories SubmitVideo may read from; empty refuses every path (uploads still work).")
    max_upload_bytes: int = setting(8 * 1024**3, "Largest video UploadVideo accepts.")
    key_prefix: str = setting(
        "vidsearch", "Namespace of every Redis key, so several deployments (or tests) can share one Redis.")
    workers: int = setting(0, "Worker tasks inside the API server process; 0 leaves the work to standalone workers.")
    max_attempts: int = setting(
        5, "Delivery attempts of one job (worker losses and transient errors) before it is dead-lettered.")
    claim_idle_ms: int = setting(
        60_000, "A job whose worker has not renewed its claim for this long is taken over by another worker.")
    retry_base_seconds: float = setting(
        1.0, "Backoff before retrying after a transient error: base * 2^(attempt-1), capped at retry_max_seconds.")
    retry_max_seconds: float = setting(60.0, "Longest backoff between retries of a job.")
    decode_processes: int = setting(
        0, "Processes decoding and sampling video; 0 means one per CPU core (at most 8). Set it in a pod.")
    decode_chunk_clips: int = setting(4, "Clips per task sent to a decode process (one open and seek per task).")
    encode_batch_clips: int = setting(
        16, "Clips per EncodeVideos call (12 frames at 224 px is 1.8 MB a clip; 16 stay under 32 MB).")
    queue_clips: int = setting(
        32, "Clips waiting between pipeline stages; bounds memory, and a slow stage holds back the others.")
    index_write_quorum: int = setting(
        0, "Replicas of a shard that must store a write before it counts; 0: all of them. Below all, a replica "
        "that was down catches up from a peer before it serves again (VIDSEARCH_INDEX_PEERS), but a write is "
        "lost if every replica that stored it fails for good, or the whole shard restarts before it is copied.")
    rpc_timeout_seconds: float = setting(120.0, "Deadline of every call to the encoder and the index.")
    thumbnail_max_side: int = setting(320, "Longest side of a clip's thumbnail JPEG, in pixels.")
    job_ttl_seconds: int = setting(7 * 24 * 3600, "How long a finished job's record stays readable in Redis.")
    window_seconds: float = setting(
        20.0, "Default fixed window length, and the longest segment in shot mode (CLIP4Clip uses 20 s); "
        "a request's zero takes this.")
    overlap_seconds: float = setting(0.0, "Default overlap between consecutive fixed windows.")
    min_clip_seconds: float = setting(
        2.0, "A last partial window shorter than this is merged into the previous clip instead of becoming its own.")
    min_shot_seconds: float = setting(2.0, "Shot mode: shots shorter than this are merged into a neighbour.")
    shot_threshold: float = setting(
        0.15, "Shot mode: least colour-histogram distance (0..1) between consecutive frames that can be a cut "
        "(it must also stand out from the recent frames).")
    api_keys_file: Path | None = setting(
        None, "API keys, one `<key> <read|write>` per line; submitting, uploading, cancelling and deleting need "
        "a write key. Unset: no keys checked (loopback development only).")
    redis_password_file: Path | None = setting(
        None, "File holding the Redis password (a mounted Secret); never put the password in redis_url, which "
        "may name the user (redis://vidsearch@redis:6379/0).")
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

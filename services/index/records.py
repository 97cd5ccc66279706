"""Value types of the index shard: clip records, search filters and hits, and write-side validation.

Everything here is plain data; the store, segments and shard engine build on these types.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from services.common.errors import InvalidInput, WrongState


def _freeze_mapping(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType({str(k): str(v) for k, v in (value or {}).items()})


@dataclass(frozen=True, eq=False)
class ClipRecord:
    """One indexed clip: where it sits in its video, its embedding and what a result page shows.

    ``vector`` is a float32 array of the shard's dimension, or ``None`` when the record was read
    without its vector (search hits never load vectors). Records compare by value, vector included.
    """

    clip_id: str
    video_id: str
    start_s: float
    end_s: float
    vector: np.ndarray | None
    caption: str = ""
    tags: tuple[str, ...] = ()
    thumbnail_ref: str = ""
    model_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vector is not None:
            try:
                vector = np.asarray(self.vector, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"vector for clip {self.clip_id!r} is not numeric: {exc}") from None
            # A read-only view: the record cannot be changed through it, the caller's array stays
            # writable, and no data is copied.
            vector = vector.view()
            vector.flags.writeable = False
            object.__setattr__(self, "vector", vector)
        object.__setattr__(self, "tags", tuple(str(t) for t in self.tags))
        object.__setattr__(self, "metadata", _freeze_mapping(self.metadata))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClipRecord):
            return NotImplemented
        if (self.vector is None) != (other.vector is None):
            return False
        if self.vector is not None and not np.array_equal(self.vector, other.vector):
            return False
        return (
            self.clip_id,
            self.video_id,
            self.start_s,
            self.end_s,
            self.caption,
            self.tags,
            self.thumbnail_ref,
            self.model_id,
            dict(self.metadata),
        ) == (
            other.clip_id,
            other.video_id,
            other.start_s,
            other.end_s,
            other.caption,
            other.tags,
            other.thumbnail_ref,
            other.model_id,
            dict(other.metadata),
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array and a mapping

    def without_vector(self) -> ClipRecord:
        return replace(self, vector=None)

    def content_bytes(self) -> bytes:
        """Every field and the vector's little-endian float32 bytes, unambiguously encoded: what two
        replicas holding the same clip agree on byte for byte (the shard checksum hashes these)."""
        fields = json.dumps([self.clip_id, self.video_id, float(self.start_s), float(self.end_s), self.caption,
                             list(self.tags), self.thumbnail_ref, self.model_id, sorted(self.metadata.items())],
                            ensure_ascii=False, separators=(",", ":")).encode()
        vector = b"" if self.vector is None else np.ascontiguousarray(self.vector, dtype="<f4").tobytes()
        return b"%d:%s%d:%s" % (len(fields), fields, len(vector), vector)


@dataclass(frozen=True)
class SearchFilter:
    """Restricts a search to clips matching ALL of the given conditions; an empty filter matches all.

    - ``video_ids``: the clip belongs to one of these videos.
    - ``min_start_s`` / ``max_end_s``: the clip lies entirely within ``[min_start_s, max_end_s]``
      (``start_s >= min_start_s`` and ``end_s <= max_end_s``); either bound may be omitted.
    - ``tags``: the clip carries every one of these tags.
    - ``metadata``: for each key, the clip's metadata value equals the given value exactly.
    """

    video_ids: frozenset[str] = frozenset()
    min_start_s: float | None = None
    max_end_s: float | None = None
    tags: frozenset[str] = frozenset()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "video_ids", frozenset(self.video_ids))
        object.__setattr__(self, "tags", frozenset(self.tags))
        object.__setattr__(self, "metadata", _freeze_mapping(self.metadata))
        for name in ("min_start_s", "max_end_s"):
            bound = getattr(self, name)
            if bound is not None and not math.isfinite(bound):
                raise InvalidInput(f"filter {name} must be a finite number of seconds, got {bound!r}")
        if (
            self.min_start_s is not None
            and self.max_end_s is not None
            and self.max_end_s < self.min_start_s
        ):
            raise InvalidInput(
                f"filter max_end_s {self.max_end_s} is before min_start_s {self.min_start_s}"
            )

    @property
    def is_empty(self) -> bool:
        return (
            not self.video_ids
            and self.min_start_s is None
            and self.max_end_s is None
            and not self.tags
            and not self.metadata
        )

    def matches(self, record: ClipRecord) -> bool:
        """True if ``record`` passes the filter (its vector is not needed)."""
        if self.video_ids and record.video_id not in self.video_ids:
            return False
        if self.min_start_s is not None and record.start_s < self.min_start_s:
            return False
        if self.max_end_s is not None and record.end_s > self.max_end_s:
            return False
        if self.tags and not self.tags.issubset(record.tags):
            return False
        meta = record.metadata
        return all(meta.get(key) == value for key, value in self.metadata.items())


@dataclass(frozen=True)
class Hit:
    """One search result: the clip, its cosine similarity to the query, and its record (no vector)."""

    clip_id: str
    score: float
    record: ClipRecord


# float32 rounding moves a normalised vector's norm by about 1e-7; anything this close to 1 is unit.
_UNIT_TOLERANCE = 1e-6


def validate_records(records: Iterable[ClipRecord], dim: int, model_id: str) -> list[ClipRecord]:
    """Check a write batch against the shard and return it with L2-normalised float32 vectors (a vector
    already of unit length, within float32 rounding, is returned unchanged).

    Raises InvalidInput for malformed records and WrongState when a record was embedded by a
    different model than the one the shard is bound to. Records without a model id inherit it.
    """
    records = list(records)
    seen: set[str] = set()
    clean: list[ClipRecord] = []
    for record in records:
        if not isinstance(record, ClipRecord):
            raise InvalidInput(f"expected ClipRecord, got {type(record).__name__}")
        cid = record.clip_id
        if not isinstance(cid, str) or not cid.strip():
            raise InvalidInput("clip_id must be a non-empty string")
        if cid in seen:
            raise InvalidInput(f"duplicate clip id {cid!r} in one batch; each clip may appear once")
        seen.add(cid)
        if not isinstance(record.video_id, str) or not record.video_id.strip():
            raise InvalidInput(f"clip {cid!r} has an empty video_id")
        for name in ("start_s", "end_s"):
            value = getattr(record, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidInput(f"clip {cid!r} has {name}={value!r}; expected a finite number of seconds")
        if record.start_s < 0:
            raise InvalidInput(f"clip {cid!r} starts at {record.start_s}s; start_s must be >= 0")
        if record.end_s < record.start_s:
            raise InvalidInput(f"clip {cid!r} ends ({record.end_s}s) before it starts ({record.start_s}s)")
        if record.model_id and record.model_id != model_id:
            raise WrongState(
                f"clip {cid!r} was embedded with model {record.model_id!r}, shard holds model {model_id!r}"
            )
        vector = record.vector
        if vector is None:
            raise InvalidInput(f"clip {cid!r} has no vector")
        if vector.ndim != 1 or vector.shape[0] != dim:
            raise InvalidInput(
                f"vector for clip {cid!r} has dimension {_shape_text(vector)}, shard expects {dim}"
            )
        if not np.isfinite(vector).all():
            raise InvalidInput(f"vector for clip {cid!r} contains NaN or Inf")
        # Norm in float64: a tiny float32 vector can underflow to 0 when squared.
        norm = float(np.linalg.norm(vector.astype(np.float64)))
        if norm == 0.0:
            raise InvalidInput(f"vector for clip {cid!r} is all zeros; cosine similarity is undefined")
        # A vector that is already unit length is kept byte for byte, so normalising is idempotent: a
        # stored vector copied to another replica (catch-up) or shard is stored unchanged there.
        if abs(norm - 1.0) <= _UNIT_TOLERANCE:
            unit = np.asarray(vector, dtype=np.float32)
        else:
            unit = (vector.astype(np.float64) / norm).astype(np.float32)
        clean.append(replace(record, vector=unit, model_id=model_id))
    return clean


def _shape_text(vector: np.ndarray) -> str:
    return str(vector.shape[0]) if vector.ndim == 1 else f"shape {vector.shape}"

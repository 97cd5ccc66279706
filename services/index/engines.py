"""The segment engines a shard can build, by the names its settings and segment manifests use."""

from __future__ import annotations

import os

from services.index.ivf import IvfSegment
from services.index.segment import AnnoySegment, Segment, SegmentCorrupt, read_manifest

ENGINES: dict[str, type[Segment]] = {AnnoySegment.engine: AnnoySegment, IvfSegment.engine: IvfSegment}


def load_segment(directory: str | os.PathLike[str], name: str, *, dim: int | None = None) -> Segment:
    """Open a persisted segment with the engine its manifest names (Annoy when it names none)."""
    engine = read_manifest(directory, name).get("engine", AnnoySegment.engine)
    if engine not in ENGINES:
        raise SegmentCorrupt(f"segment {name} needs engine {engine!r}, this build has {sorted(ENGINES)}")
    return ENGINES[engine].load(directory, name, dim=dim)

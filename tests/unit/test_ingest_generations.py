"""An ingest attempt writes only to the index generation it started on while that one is active: after
a switch (or a drop) it stops before its next write, as transient, so its retry writes to the new one;
a filler that was given its generation keeps writing to it while it exists."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.common.errors import DependencyDown
from services.common.generations import GenerationClients, GenerationPool
from services.common.routing import Generation, Routing
from services.ingest.pipeline import PipelineLimits, VideoWrite, _Attempt
from vidsearch.common.v1 import common_pb2
from vidsearch.encoder.v1 import encoder_pb2

G1 = Generation("g1", "m", "enc:1", ("a:1",))


def _pool() -> GenerationPool:
    static = Routing.static("enc:0", ["s:1"]).with_generation(G1)
    return GenerationPool(None, static, lambda g: GenerationClients(g, None, None))  # type: ignore[arg-type]


def _attempt(pool: GenerationPool, clients: GenerationClients, follow_active: bool) -> _Attempt:
    pipeline = SimpleNamespace(generations=pool, limits=PipelineLimits())
    video = VideoWrite("video", "file:///videos/a.mp4", template=lambda clip: common_pb2.ClipRecord())
    info = encoder_pb2.InfoResponse(frames_per_clip=2, image_size=8, crop="round")
    return _Attempt(pipeline, clients, video, None, info, follow_active=follow_active)  # type: ignore[arg-type]


def test_a_job_stops_writing_once_another_generation_is_active() -> None:
    pool = _pool()
    job = _attempt(pool, pool.snapshot(), follow_active=True)
    job._check_generation()  # g0 active: writes go on
    pool.watcher.routing = pool.routing.switched_to("g1")
    with pytest.raises(DependencyDown, match="changed from g0 to g1"):
        job._check_generation()


def test_a_filler_writes_to_its_generation_until_it_is_dropped() -> None:
    pool = _pool()
    filler = _attempt(pool, pool.get("g1"), follow_active=False)
    filler._check_generation()  # g1 is being built, not active: a filler still writes to it
    pool.watcher.routing = pool.routing.switched_to("g1").switched_to("g0").without("g1")
    with pytest.raises(DependencyDown, match="g1 was dropped"):
        filler._check_generation()

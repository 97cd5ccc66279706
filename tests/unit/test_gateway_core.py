"""The gateway's SearchCore with in-process fakes of the encoder and the index shards.

The fakes implement only what SearchCore calls (``EncoderClient.info/encode_*``,
``ShardSet.shards/for_video``, ``ShardClient.name/search/get``) and record each call, so the
tests can see what was encoded, what each shard was asked and what came back.
"""

from __future__ import annotations

import asyncio
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from services.common.clip_ids import clip_id_for
from services.common.errors import DependencyDown, InvalidInput, NotFound
from services.common.generations import GenerationPool
from services.common.shards import shard_for_video
from services.gateway.cache import LocalLRUCache, cache_key, normalise_text
from services.gateway.search import DEFAULT_MAX_TEXT_CHARS, MAX_TOP_K, Query, SearchCore, SearchOptions
from services.gateway.servicer import to_response
from vidsearch.common.v1 import common_pb2
from vidsearch.index.v1 import index_pb2

DIM = 4


def _vector(content: bytes) -> np.ndarray:
    """A distinct, deterministic unit vector per content."""
    v = np.random.default_rng(zlib.crc32(content)).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeEncoder:
    """Encodes to a vector derived from the content; records every encode."""

    def __init__(self, model_id: str = "model-a", max_text_chars: int = 0) -> None:
        self.model_id = model_id
        self.max_text_chars = max_text_chars  # 0: an encoder that does not say
        self.encoded: list[tuple[str, bytes]] = []

    async def info(self, timeout_s=None):
        return SimpleNamespace(model_id=self.model_id, max_text_chars=self.max_text_chars)

    def _reply(self, modality: str, content: bytes):
        self.encoded.append((modality, content))
        return _vector(content)[None, :], self.model_id

    async def encode_texts(self, texts, language="", timeout_s=None):
        return self._reply("text", texts[0].encode())

    async def encode_images(self, images, timeout_s=None):
        return self._reply("image", images[0])

    async def encode_video(self, data, start_s=0.0, end_s=0.0, timeout_s=None):
        return self._reply("video", data + f"|{start_s}|{end_s}".encode())


def _hit(video_id: str, start_s: float, score: float, shard: str = "") -> common_pb2.ScoredClip:
    clip = common_pb2.ClipRecord(clip_id=clip_id_for(video_id, start_s), video_id=video_id,
                                 start_seconds=start_s, end_seconds=start_s + 2)
    return common_pb2.ScoredClip(clip=clip, score=score, shard=shard)


class FakeShard:
    """Answers every query with its fixed hits (best first), or raises ``error``; records each search."""

    def __init__(self, name: str, hits=(), error: BaseException | None = None, model_id: str = "") -> None:
        self.name = name
        self.model_id = model_id  # the model the shard says it holds; empty: a shard too old to say
        self.hits = sorted(hits, key=lambda h: -h.score)
        for h in self.hits:
            h.shard = name
        self.error = error
        self.clips: dict[str, common_pb2.ClipRecord] = {}
        self.searches: list[SimpleNamespace] = []

    async def search(self, queries, top_k, flt=None, timeout_s=None, include_vectors=False):
        self.searches.append(SimpleNamespace(queries=np.array(queries), top_k=top_k, filter=flt, timeout_s=timeout_s))
        if self.error is not None:
            raise self.error
        return index_pb2.SearchResponse(results=[index_pb2.QueryHits(hits=self.hits[:top_k]) for _ in queries],
                                        model_id=self.model_id)

    async def get(self, clip_ids, include_vectors=False, timeout_s=None):
        found = [self.clips[c] for c in clip_ids if c in self.clips]
        if not include_vectors:
            found = [common_pb2.ClipRecord(clip_id=c.clip_id, video_id=c.video_id) for c in found]
        return index_pb2.GetResponse(clips=found, missing_ids=[c for c in clip_ids if c not in self.clips])


class FakeShardSet:
    """Routes a video to its shard the way the real ShardSet does."""

    def __init__(self, shards: list[FakeShard]) -> None:
        self.shards = shards

    def for_video(self, video_id: str) -> FakeShard:
        return self.shards[shard_for_video(video_id, len(self.shards))]

    def store(self, clip: common_pb2.ClipRecord) -> FakeShard:
        shard = self.for_video(clip.video_id)
        shard.clips[clip.clip_id] = clip
        return shard


def _core(*shards: FakeShard, encoder: FakeEncoder | None = None) -> SearchCore:
    shards = shards or (FakeShard("shard-0", [_hit("v0", 0, 0.5)]),)
    return SearchCore(GenerationPool.fixed(encoder or FakeEncoder(), FakeShardSet(list(shards))), LocalLRUCache())


def _search(core: SearchCore, *queries: Query, top_k: int = 10, **options):
    """Runs the queries one after another in one event loop; returns their results."""

    async def main():
        return [await core.search(q, SearchOptions(top_k=top_k, **options)) for q in queries]

    return asyncio.run(main())


def _ids(result) -> list[str]:
    return [h.clip.clip_id for h in result.hits]


# --- the query cache ---------------------------------------------------------------------------

def test_a_text_query_is_encoded_once_then_served_from_the_cache() -> None:
    shard = FakeShard("shard-0", [_hit("v0", 0, 0.9), _hit("v1", 0, 0.4)])
    encoder = FakeEncoder()
    core = _core(shard, encoder=encoder)
    first, second = _search(core, Query(text="a red car"), Query(text="a red car"))
    assert encoder.encoded == [("text", b"a red car")]
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.encode_ms == 0.0 and first.encode_ms > 0.0
    assert _ids(first) == _ids(second) == [clip_id_for("v0", 0), clip_id_for("v1", 0)]
    # The cached vector is the encoded one: both searches sent the shards the same query.
    assert len(shard.searches) == 2
    np.testing.assert_array_equal(shard.searches[0].queries, shard.searches[1].queries)
    np.testing.assert_allclose(shard.searches[1].queries[0], _vector(b"a red car"))
    assert first.model_id == second.model_id == "model-a"


@pytest.mark.parametrize(("first", "second", "shared"), [
    (Query(text="a red car"), Query(text="  A   RED\tcar "), True),
    (Query(text="caf\u00e9"), Query(text="cafe\u0301"), True),  # NFC and NFD spellings of one word
    (Query(text="STRASSE"), Query(text="straße"), True),  # case-folded, not just lower-cased
    (Query(text="a red car"), Query(text="a red cars"), False),
    (Query(text="a red car"), Query(text="ared car"), False),
    (Query(text="abc"), Query(image=b"abc"), False),  # same bytes, other modality
    (Query(image=b"\x89PNG-1"), Query(image=b"\x89PNG-1"), True),
    (Query(image=b"\x89PNG-1"), Query(image=b"\x89PNG-2"), False),
    (Query(video=b"mp4", video_start_s=1, video_end_s=3), Query(video=b"mp4", video_start_s=1, video_end_s=3), True),
    (Query(video=b"mp4", video_start_s=1, video_end_s=3), Query(video=b"mp4", video_start_s=1, video_end_s=4), False),
    (Query(video=b"mp4"), Query(image=b"mp4"), False),
], ids=["whitespace-case", "unicode-forms", "casefold", "other-word", "other-spacing", "text-vs-image",
        "same-image", "other-image", "same-video-range", "other-video-range", "video-vs-image"])
def test_the_cache_key_follows_modality_and_normalised_content(first: Query, second: Query, shared: bool) -> None:
    encoder = FakeEncoder()
    results = _search(_core(encoder=encoder), first, second)
    assert len(encoder.encoded) == (1 if shared else 2), encoder.encoded
    assert results[1].cache_hit is shared


def test_a_new_model_never_reads_the_old_models_vectors() -> None:
    encoder = FakeEncoder("model-a")
    core = _core(encoder=encoder)

    async def main():
        first = await core.search(Query(text="dog"), SearchOptions())
        encoder.model_id = "model-b"
        await core.refresh_model()
        second = await core.search(Query(text="dog"), SearchOptions())
        third = await core.search(Query(text="dog"), SearchOptions())
        return first, second, third

    first, second, third = asyncio.run(main())
    assert len(encoder.encoded) == 2
    assert [r.model_id for r in (first, second, third)] == ["model-a", "model-b", "model-b"]
    assert [r.cache_hit for r in (first, second, third)] == [False, False, True]


def test_a_model_change_seen_on_encode_is_adopted_and_cached_under_the_new_model() -> None:
    encoder = FakeEncoder("model-a")
    core = _core(encoder=encoder)

    async def main():
        await core.refresh_model()
        encoder.model_id = "model-b"  # swapped behind the gateway's back
        return [await core.search(Query(text=t), SearchOptions()) for t in ("cat", "cat")]

    first, second = asyncio.run(main())
    assert core.model_id == "model-b"
    assert (first.model_id, second.model_id) == ("model-b", "model-b")
    assert second.cache_hit and len(encoder.encoded) == 1
    cached = asyncio.run(core.cache.get(cache_key("model-b", "text", normalise_text("cat").encode())))
    np.testing.assert_allclose(cached, _vector(b"cat"))
    assert asyncio.run(core.cache.get(cache_key("model-a", "text", b"cat"))) is None


@pytest.mark.parametrize(("a", "b"), [
    (("m1", "text", b"x"), ("m2", "text", b"x")),
    (("m1", "text", b"x"), ("m1", "image", b"x")),
    (("m1", "text", b"x"), ("m1", "text", b"y")),
], ids=["model", "modality", "content"])
def test_cache_key_changes_with_each_part(a, b) -> None:
    assert cache_key(*a) != cache_key(*b)
    assert cache_key(*a) == cache_key(*a)
    assert cache_key(*a).startswith(f"vidsearch:qemb:{a[0]}:{a[1]}:")


# --- fan-out and merge -------------------------------------------------------------------------

def _three_shards(**errors: BaseException) -> list[FakeShard]:
    scores = {"shard-0": [0.91, 0.55, 0.12], "shard-1": [0.87, 0.86, 0.30], "shard-2": [0.95, 0.20]}
    return [FakeShard(name, [_hit(f"{name}-v", i, s) for i, s in enumerate(ss)], errors.get(name))
            for name, ss in scores.items()]


ALL_BY_SCORE = [0.95, 0.91, 0.87, 0.86, 0.55, 0.30, 0.20, 0.12]


@pytest.mark.parametrize("top_k", [1, 3, 5, 8, 50])
def test_hits_from_every_shard_are_merged_by_score_and_cut_at_top_k(top_k: int) -> None:
    shards = _three_shards()
    (result,) = _search(_core(*shards), Query(text="q"), top_k=top_k)
    assert [round(h.score, 2) for h in result.hits] == ALL_BY_SCORE[:top_k]
    assert result.failed_shards == []
    assert all(s.searches[0].top_k == top_k for s in shards)  # nothing to exclude: no over-fetch
    assert not to_response(result).partial


def test_collapse_by_video_keeps_the_best_clip_of_each_video_and_over_fetches() -> None:
    shards = [FakeShard("shard-0", [_hit("a", 0, 0.9), _hit("a", 2, 0.8), _hit("b", 0, 0.7)]),
              FakeShard("shard-1", [_hit("c", 0, 0.85), _hit("c", 2, 0.84), _hit("d", 0, 0.1)])]
    (result,) = _search(_core(*shards), Query(text="q"), top_k=3, collapse_by_video=True)
    assert [(h.clip.video_id, round(h.score, 2)) for h in result.hits] == [("a", 0.9), ("c", 0.85), ("b", 0.7)]
    assert all(s.searches[0].top_k == 12 for s in shards)


def test_the_filter_reaches_every_shard() -> None:
    shards = _three_shards()
    flt = common_pb2.SearchFilter(video_ids=["shard-1-v"])
    _search(_core(*shards), Query(text="q"), filter=flt)
    assert all(s.searches[0].filter == flt for s in shards)


@pytest.mark.parametrize("error", [DependencyDown("shard-1 is down"), TimeoutError(), RuntimeError("bug")],
                         ids=["dependency-down", "timeout", "unexpected"])
def test_a_failing_shard_makes_the_result_partial_and_the_others_still_answer(error: BaseException) -> None:
    (result,) = _search(_core(*_three_shards(**{"shard-1": error})), Query(text="q"), top_k=4)
    assert result.failed_shards == ["shard-1"]
    assert [round(h.score, 2) for h in result.hits] == [0.95, 0.91, 0.55, 0.20]
    assert {h.shard for h in result.hits} == {"shard-0", "shard-2"}
    response = to_response(result)
    assert response.partial and list(response.failed_shards) == ["shard-1"]


def test_when_every_shard_fails_the_search_is_dependency_down() -> None:
    shards = _three_shards(**{f"shard-{i}": DependencyDown(f"shard-{i} down") for i in range(3)})
    with pytest.raises(DependencyDown, match="all 3 index shards") as err:
        _search(_core(*shards), Query(text="q"))
    assert all(f"shard-{i}" in str(err.value) for i in range(3))


def test_when_every_shard_refuses_the_request_as_invalid_the_search_is_invalid_input() -> None:
    shards = _three_shards(**{f"shard-{i}": InvalidInput("unknown filter field") for i in range(3)})
    with pytest.raises(InvalidInput, match="unknown filter field"):
        _search(_core(*shards), Query(text="q"))


def test_each_shard_gets_the_time_left_on_the_deadline() -> None:
    shards = _three_shards()
    core = _core(*shards)
    asyncio.run(core.search(Query(text="q"), SearchOptions(), timeout_s=2.0))
    for shard in shards:
        assert 1.0 < shard.searches[0].timeout_s <= 2.0 - core.deadline_margin_s


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "top_k", "message"), [
    (Query(), 10, "the query is empty"),
    (Query(text=""), 10, "text query is empty"),
    (Query(text=" \t\n "), 10, "text query is empty"),
    (Query(text="x" * (DEFAULT_MAX_TEXT_CHARS + 1)), 10, f"the limit is {DEFAULT_MAX_TEXT_CHARS}"),
    (Query(image=b""), 10, "image query is empty"),
    (Query(video=b""), 10, "video query is empty"),
    (Query(clip_id=""), 10, "clip_id query is empty"),
    (Query(clip_id="no-start-time"), 10, "malformed clip id"),
    (Query(text="fine"), 0, "top_k must be in"),
    (Query(text="fine"), -1, "top_k must be in"),
    (Query(text="fine"), MAX_TOP_K + 1, "top_k must be in"),
], ids=["empty", "empty-text", "blank-text", "too-long-text", "empty-image", "empty-video", "empty-clip-id",
        "malformed-clip-id", "top-k-0", "top-k-negative", "top-k-too-big"])
def test_bad_queries_are_invalid_input_and_reach_no_dependency(query: Query, top_k: int, message: str) -> None:
    encoder, shard = FakeEncoder(), FakeShard("shard-0", [_hit("v0", 0, 0.5)])
    with pytest.raises(InvalidInput, match=message):
        _search(_core(shard, encoder=encoder), query, top_k=top_k)
    assert encoder.encoded == [] and shard.searches == []


@pytest.mark.parametrize(("query", "top_k"), [
    (Query(text="x" * DEFAULT_MAX_TEXT_CHARS), 10),
    (Query(text="fine"), 1),
    (Query(text="fine"), MAX_TOP_K),
], ids=["longest-text", "top-k-1", "top-k-max"])
def test_the_limits_themselves_are_allowed(query: Query, top_k: int) -> None:
    (result,) = _search(_core(), query, top_k=top_k)
    assert _ids(result) == [clip_id_for("v0", 0)]


# --- search by clip id -------------------------------------------------------------------------

def test_a_clip_id_query_searches_with_the_clips_stored_vector_and_leaves_the_clip_out() -> None:
    me = _hit("me", 4, 1.0)
    others = [_hit(f"other-{i}", 0, 0.9 - i / 10) for i in range(4)]
    shards = [FakeShard("shard-0", [me, *others[:2]]), FakeShard("shard-1", others[2:])]
    shard_set = FakeShardSet(shards)
    stored = common_pb2.ClipRecord(clip_id=me.clip.clip_id, video_id="me",
                                   vector=common_pb2.Vector(values=[0.5, 0.5, 0.5, 0.5]))
    shard_set.store(stored)
    encoder = FakeEncoder()
    core = SearchCore(GenerationPool.fixed(encoder, shard_set), LocalLRUCache())
    result = asyncio.run(core.search(Query(clip_id=me.clip.clip_id), SearchOptions(top_k=3)))
    assert encoder.encoded == []  # the vector comes from the index, not the encoder
    assert not result.cache_hit
    np.testing.assert_allclose(shards[0].searches[0].queries[0], [0.5, 0.5, 0.5, 0.5])
    assert me.clip.clip_id not in _ids(result)
    assert _ids(result) == [o.clip.clip_id for o in others[:3]]
    # One more than top_k is fetched, so leaving the clip out still fills the page.
    assert all(s.searches[0].top_k == 4 for s in shards)


def test_a_clip_id_that_is_not_in_the_index_is_not_found() -> None:
    shards = _three_shards()
    with pytest.raises(NotFound, match="no clip"):
        _search(_core(*shards), Query(clip_id=clip_id_for("ghost", 0)))
    assert all(s.searches == [] for s in shards)


def test_query_modality_is_the_field_that_is_set() -> None:
    assert [q.modality for q in (Query(text="t"), Query(image=b"i"), Query(video=b"v"), Query(clip_id="c:0"))] == [
        "text", "image", "video", "clip_id"]


def test_the_text_limit_is_the_encoders() -> None:
    encoder = FakeEncoder(max_text_chars=20)
    core = _core(encoder=encoder)

    async def go() -> None:
        await core.refresh_model()
        await core.search(Query(text="x" * 20), SearchOptions())
        with pytest.raises(InvalidInput, match="the limit is 20"):
            await core.search(Query(text="x" * 21), SearchOptions())

    asyncio.run(go())
    assert encoder.encoded == [("text", b"x" * 20)]


# --- index generations -------------------------------------------------------------------------

def test_hits_of_a_shard_holding_another_model_are_never_merged() -> None:
    good = FakeShard("shard-0", [_hit("v0", 0, 0.5)], model_id="model-a")
    stale = FakeShard("shard-1", [_hit("v1", 0, 0.9)], model_id="model-old")
    result = _search(_core(good, stale), Query(text="a red car"))[0]
    assert _ids(result) == [clip_id_for("v0", 0)]
    assert result.failed_shards == ["shard-1"]
    assert result.model_id == "model-a"


def test_an_encoder_serving_another_model_than_its_generation_fails_the_search() -> None:
    shard = FakeShard("shard-0", [_hit("v0", 0, 0.5)], model_id="model-b")
    core = SearchCore(GenerationPool.fixed(FakeEncoder("model-a"), FakeShardSet([shard]), model_id="model-b"),
                      LocalLRUCache())
    with pytest.raises(DependencyDown, match="model-a"):
        _search(core, Query(text="a red car"))
    assert shard.searches == []

"""The search reply's JSON encoder (pydantic-core) writes the bytes Starlette's ``json.dumps`` would,
and null for a NaN."""

from __future__ import annotations

import json

import pytest
from fastapi.responses import JSONResponse

from services.web.api import SearchJSONResponse, clip_path, hit_json
from vidsearch.gateway.v1 import gateway_pb2

HIT = gateway_pb2.SearchHit(
    clip_id="news-0412:000020000", video_id="news-0412", score=0.8125, start_seconds=20.0, end_seconds=40.0,
    source_timecode="10:00:20;00", caption="스튜디오에서 전화를 받는 남자 \"quoted\" \\ back\nslash",
    tags=["뉴스", "studio"], thumbnail_ref="t", metadata={"title": "9시 뉴스", "source_uri": "media:x"})


@pytest.mark.parametrize("content", [
    {"hits": [hit_json(HIT)], "model_id": "m", "partial": False, "failed_shards": [],
     "timings": {"encode_ms": 1.5, "search_ms": 0.25, "total_ms": 2.0, "cache_hit": True}},
    {"hits": [], "model_id": "", "partial": True, "failed_shards": ["shard-1"], "timings": {}},
])
def test_search_json_is_byte_for_byte_starlettes(content: dict) -> None:
    ours = SearchJSONResponse(content)
    assert ours.body == JSONResponse(content).body
    assert json.loads(ours.body) == content
    assert ours.headers["content-type"] == "application/json"


def test_a_score_that_is_not_a_number_is_written_as_null() -> None:
    body = SearchJSONResponse({"hits": [{"score": float("nan")}, {"score": float("inf")}]}).body
    assert json.loads(body, parse_constant=lambda name: pytest.fail(f"{name} is not JSON")) == {
        "hits": [{"score": None}, {"score": None}]}


def test_hit_urls_quote_the_clip_id() -> None:
    hit = hit_json(HIT)
    assert hit["video_url"] == "/api/v1/clips/news-0412%3A000020000/video"
    assert hit["thumbnail_url"] == "/api/v1/clips/news-0412%3A000020000/thumbnail"
    assert "source_uri" not in hit["metadata"] and hit["title"] == "9시 뉴스"
    assert clip_path("a/b?c") == "/api/v1/clips/a%2Fb%3Fc"

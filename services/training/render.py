"""Drawing synthetic scenes with numpy and encoding films of them as H.264 MP4 with PyAV.

A scene is a static place background (its texture drawn once) with sprites pasted along straight
paths, so a frame costs a copy and a few small blends. The encoder runs single-threaded with a
fixed keyframe interval, which makes the file's bytes a function of its scenes alone.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from services.common.atomic import replacing
from services.training.scenes import Attributes, Scene

#: Object fill colours (RGB); night dims them less than the background, so colours stay readable.
COLOUR_RGB = {
    "red": (225, 35, 35),
    "blue": (40, 80, 240),
    "green": (40, 190, 50),
    "yellow": (245, 225, 35),
    "white": (245, 245, 245),
    "purple": (160, 55, 210),
}
_OUTLINE_RGB = np.array((15, 15, 20), np.float32)
_NIGHT_BACKGROUND_GAIN, _NIGHT_TINT = 0.32, np.array((4, 8, 30), np.float32)
_NIGHT_OBJECT_GAIN = 0.8
_SUPERSAMPLE = 4
#: Perpendicular "lanes" (fraction of the frame) the objects travel in, by count.
_LANES = {1: (0.5,), 2: (0.34, 0.66), 3: (0.22, 0.5, 0.78)}
_ENCODER_OPTIONS = {"preset": "veryfast", "crf": "20"}


@dataclass(frozen=True)
class Sprite:
    """An object image with premultiplied colour: ``pixel = pixel * (1 - alpha) + premultiplied``."""

    premultiplied: np.ndarray  # float32 [h, w, 3]
    alpha: np.ndarray  # float32 [h, w, 1]


def _polygon(shape: str, n: float) -> list[tuple[float, float]] | None:
    """The outline of ``shape`` in an n x n box, or None for a circle."""
    if shape == "square":
        lo, hi = 0.1 * n, 0.9 * n
        return [(lo, lo), (hi, lo), (hi, hi), (lo, hi)]
    if shape == "triangle":
        return [(0.5 * n, 0.04 * n), (0.97 * n, 0.9 * n), (0.03 * n, 0.9 * n)]
    if shape == "diamond":
        return [(0.5 * n, 0.0), (0.88 * n, 0.5 * n), (0.5 * n, n), (0.12 * n, 0.5 * n)]
    if shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 0.5, 0.21) * n
        return [(0.5 * n + r * np.cos(a), 0.53 * n + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)]
    return None


def _mask(shape: str, size: int, margin: int, outline: int) -> np.ndarray:
    """Antialiased coverage [size + 2 margin]^2 of the shape, grown by ``outline`` pixels when > 0."""
    k = _SUPERSAMPLE
    canvas = Image.new("L", ((size + 2 * margin) * k,) * 2, 0)
    draw = ImageDraw.Draw(canvas)
    offset, n = margin * k, size * k
    width = 2 * outline * k  # PIL centres the stroke on the edge: half of it lies outside
    polygon = _polygon(shape, n)
    if polygon is None:
        box = (offset, offset, offset + n - 1, offset + n - 1)
        draw.ellipse(box, fill=255, outline=255 if width else None, width=width)
    else:
        points = [(x + offset, y + offset) for x, y in polygon]
        draw.polygon(points, fill=255, outline=255 if width else None, width=width)
    small = canvas.resize((size + 2 * margin,) * 2, Image.Resampling.BOX)
    return np.asarray(small, np.float32)[..., None] / 255.0


@functools.cache
def sprite(shape: str, colour: str, size: int, night: bool) -> Sprite:
    """A ``size``-pixel object with a dark outline, so it stands out on any background."""
    outline = max(1, size // 14)
    fill = _mask(shape, size, outline, 0)
    edge = _mask(shape, size, outline, outline)
    rgb = np.array(COLOUR_RGB[colour], np.float32) * (_NIGHT_OBJECT_GAIN if night else 1.0)
    alpha = fill + (1.0 - fill) * edge
    premultiplied = fill * rgb + (1.0 - fill) * edge * _OUTLINE_RGB
    return Sprite(premultiplied, alpha)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a random ``cells`` grid, bilinearly upsampled."""
    height, width = shape
    grid = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((width, height), Image.Resampling.BILINEAR))


def _vertical(top: Sequence[float], bottom: Sequence[float], y: np.ndarray) -> np.ndarray:
    return np.asarray(top, np.float32) * (1.0 - y) + np.asarray(bottom, np.float32) * y


def background(place: str, time: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The static backdrop of a scene: float32 [H, W, 3], a distinct colour and texture per place."""
    width, height = size
    y = (np.arange(height, dtype=np.float32) / max(height - 1, 1))[:, None, None]
    x = (np.arange(width, dtype=np.float32) / max(width - 1, 1))[None, :, None]
    blotches = _smooth_noise(rng, (height, width), 6)[..., None]
    if place == "sea":
        horizon = rng.uniform(0.22, 0.34)
        sky = _vertical((120, 175, 235), (185, 215, 240), y / horizon)
        depth = np.clip((y - horizon) / (1.0 - horizon), 0.0, 1.0)
        freq, phase = rng.uniform(9.0, 14.0), rng.uniform(0.0, 2 * np.pi)
        waves = np.sin(2 * np.pi * freq * depth + 2.0 * np.sin(6.0 * x + phase) + phase)
        water = _vertical((30, 95, 170), (10, 45, 110), depth) * (1.0 + 0.12 * waves)
        image = np.where(y < horizon, sky, water)
    elif place == "forest":
        image = _vertical((45, 110, 50), (25, 65, 30), y) * (1.0 + 0.25 * blotches)
        for _ in range(int(rng.integers(4, 8))):
            left = int(rng.integers(0, width))
            trunk_w = int(rng.integers(2, max(3, width // 24)))
            image[:, left : left + trunk_w] = (85, 58, 35)
        image = image + 12.0 * _smooth_noise(rng, (height, width), 24)[..., None]
    elif place == "city":
        image = np.broadcast_to(_vertical((150, 175, 210), (200, 205, 215), y), (height, width, 3)).copy()
        left = 0
        while left < width:
            building_w = min(int(rng.integers(max(4, width // 14), max(6, width // 5))), width - left)
            top = int(height * rng.uniform(0.25, 0.6))
            shade = rng.uniform(60, 115)
            image[top:, left : left + building_w] = (shade, shade, shade * 1.08)
            lit = rng.random((height, building_w)) < (0.25 if time == "night" else 0.0)
            window = np.zeros((height, building_w), bool)
            window[top + 3 :: 5, 2:-1:4] = True
            window[top + 4 :: 5, 2:-1:4] = True
            image[:, left : left + building_w][window] = (150, 160, 175)
            if time == "night":  # lit windows, made bright enough to survive the night dimming
                image[:, left : left + building_w][window & lit] = (255 / 0.32, 220 / 0.32, 120 / 0.32)
            left += building_w + int(rng.integers(0, 4))
    elif place == "desert":
        dune = 0.42 + 0.06 * np.sin(2 * np.pi * rng.uniform(0.6, 1.4) * x + rng.uniform(0, 2 * np.pi))
        sky = _vertical((225, 200, 150), (245, 225, 185), y / 0.5)
        ripples = np.sin(2 * np.pi * (rng.uniform(10, 16) * y + 1.5 * x))
        sand = _vertical((220, 170, 95), (190, 135, 70), y) * (1.0 + 0.06 * ripples)
        image = np.where(y < dune, sky, sand)
    elif place == "studio":
        cx, cy = rng.uniform(0.35, 0.65), rng.uniform(0.3, 0.5)
        light = 1.25 - 1.1 * np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        image = np.full((height, width, 3), 135.0, np.float32) * np.clip(light, 0.45, 1.25)
        image = np.where(y > rng.uniform(0.72, 0.8), image * 0.8, image)
    else:
        raise ValueError(f"unknown place {place!r}")
    image = np.broadcast_to(image, (height, width, 3)).astype(np.float32)
    image *= rng.uniform(0.92, 1.08) * rng.uniform(0.96, 1.04, 3).astype(np.float32)  # per-scene grade
    image += rng.normal(0.0, 3.0, (height, width, 1)).astype(np.float32)  # film grain, static per scene
    if time == "night":
        image = image * _NIGHT_BACKGROUND_GAIN + _NIGHT_TINT
    return np.clip(image, 0.0, 255.0)


@dataclass(frozen=True)
class ScenePlan:
    """A scene reduced to pixels: its backdrop, the object sprite, and each object's centre per frame."""

    backdrop: np.ndarray  # float32 [H, W, 3]
    sprite: Sprite
    centres: np.ndarray  # float32 [frames, objects, 2] as (x, y) pixels


def plan_scene(scene: Scene, size: tuple[int, int], n_frames: int) -> ScenePlan:
    """Lay out a scene: everything random comes from ``scene.look_seed``, so the plan is reproducible.

    The path is drawn for right/down and reversed for left/up (see `Scene`); frame k sits at
    fraction (k + 0.5) / n of the way, so the reversed path visits exactly the same positions.
    """
    a: Attributes = scene.attributes
    rng = np.random.default_rng(scene.look_seed)
    width, height = size
    backdrop = background(a.place, a.time, size, rng)
    object_px = max(6, round(rng.uniform(0.15, 0.2) * min(width, height)))
    start, end = rng.uniform(0.1, 0.18), rng.uniform(0.82, 0.9)
    jitter = 0.15 if a.count == 1 else 0.03
    lanes = np.array(_LANES[a.count]) + rng.uniform(-jitter, jitter, a.count)
    stagger = rng.uniform(-0.05, 0.05, a.count)
    progress = (np.arange(n_frames) + 0.5) / n_frames
    if a.motion in ("left", "up"):
        progress = progress[::-1]
    along = start + (end - start) * progress[:, None] + stagger[None, :]  # [frames, objects]
    across = np.broadcast_to(lanes[None, :], along.shape)
    if a.axis == "horizontal":
        centres = np.stack([along * width, across * height], axis=-1)
    else:
        centres = np.stack([across * width, along * height], axis=-1)
    return ScenePlan(backdrop, sprite(a.shape, a.colour, object_px, a.time == "night"), centres.astype(np.float32))


def draw_frame(plan: ScenePlan, k: int) -> np.ndarray:
    """Frame ``k`` of a planned scene as uint8 [H, W, 3] RGB."""
    frame = plan.backdrop.copy()
    height, width = frame.shape[:2]
    sprite_h, sprite_w = plan.sprite.alpha.shape[:2]
    for cx, cy in plan.centres[k]:
        left, top = round(float(cx) - sprite_w / 2), round(float(cy) - sprite_h / 2)
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + sprite_w, width), min(top + sprite_h, height)
        if x0 >= x1 or y0 >= y1:
            continue
        alpha = plan.sprite.alpha[y0 - top : y1 - top, x0 - left : x1 - left]
        colour = plan.sprite.premultiplied[y0 - top : y1 - top, x0 - left : x1 - left]
        region = frame[y0:y1, x0:x1]
        region *= 1.0 - alpha
        region += colour
    return (frame + 0.5).astype(np.uint8)


def render_film(path: str | os.PathLike[str], scenes: Sequence[Scene], *, fps: int, size: tuple[int, int],
                scene_seconds: float) -> Path:
    """Write the scenes back to back (hard cuts) as an H.264 MP4; a keyframe starts every scene.

    The file appears under ``path`` only once complete, so an interrupted run leaves no half film.
    """
    path = Path(path)
    scene_frames = round(fps * scene_seconds)
    with replacing(path, durable=False) as partial:
        _encode(partial, scenes, fps=fps, size=size, scene_frames=scene_frames)
    return path


def _encode(path: Path, scenes: Sequence[Scene], *, fps: int, size: tuple[int, int], scene_frames: int) -> None:
    width, height = size
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1  # x264's output depends on its thread count
        keyint = f"keyint={scene_frames}:min-keyint={scene_frames}:scenecut=0:threads=1"
        stream.options = {**_ENCODER_OPTIONS, "x264-params": keyint}
        time_base = Fraction(1, fps)
        for index, scene in enumerate(scenes):
            plan = plan_scene(scene, size, scene_frames)
            for k in range(scene_frames):
                frame = av.VideoFrame.from_ndarray(draw_frame(plan, k), format="rgb24")
                frame.pts, frame.time_base = index * scene_frames + k, time_base
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

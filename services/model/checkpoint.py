"""Building the model, and reading and writing its weights, from local files only.

The project's checkpoint is a directory::

    config.json         {"format", "format_version", "model_id", "config": ModelConfig}
    model.safetensors   every weight, float32
    tokenizer/          the HF tokenizer (save_pretrained), or a marker naming open_clip's tokenizer

Pretrained towers come from an open_clip weights FILE (e.g. OpenAI's ViT-B-32.pt) and a Hugging
Face model DIRECTORY in save_pretrained format. Every unreadable, missing or mismatched file
raises ``CheckpointError`` naming the file and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import load_file, save_file

from services.common.errors import VidsearchError
from services.model.clip4clip import Runtime, VideoTextModel, compute_model_id, select_runtime
from services.model.config import ModelConfig
from services.model.temporal import build_temporal
from services.model.tiny_tokenizer import build_tiny_tokenizer
from services.model.towers import (
    HFTextTower,
    OpenClipTextTower,
    build_openclip,
    build_visual,
    canonical_hf_config,
    hf_encoder_from_config,
)

FORMAT = "vidsearch.video-text-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
OPENCLIP_TOKENIZER_FILE = "openclip_tokenizer.json"
_HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                    "pytorch_model.bin.index.json")
# Files that carry a tokenizer's vocabulary. Without one, transformers 5 silently builds a tokenizer
# with an empty vocabulary that maps every word to [UNK].
_TOKENIZER_VOCAB_FILES = (
    "tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model",
)
_MAX_DETAIL = 300


class CheckpointError(VidsearchError):
    """A weights, config or tokenizer file is missing, unreadable, or made for another architecture."""


# -- building ----------------------------------------------------------------------------------


def build_model(
    config: ModelConfig, openclip_weights: str | Path | None = None, hf_text_dir: str | Path | None = None
) -> VideoTextModel:
    """A float32 CPU model in eval mode; towers start from the given local weights, else random.

    ``openclip_weights`` initialises the frame encoder (and the openclip text tower).
    ``hf_text_dir`` supplies the HF text encoder and its tokenizer; its architecture replaces
    ``config.text.hf_config`` in the returned model's config.
    """
    clip = build_openclip(config)
    if openclip_weights is not None:
        load_openclip_weights(clip, openclip_weights, config)
    if config.text.kind == "openclip":
        return _assemble(config, clip, None)
    if hf_text_dir is not None:
        encoder, tokenizer = load_hf_text_dir(hf_text_dir)
    elif config.text.hf_config is None:
        raise ValueError("an 'hf' text tower needs hf_text_dir, or text.hf_config and a builtin tokenizer")
    elif config.text.builtin_tokenizer is None:
        raise ValueError("an 'hf' text tower built from hf_config needs hf_text_dir or a builtin_tokenizer")
    else:
        encoder = hf_encoder_from_config(config.text.hf_config)
        tokenizer = build_tiny_tokenizer(config.max_tokens)
    if len(tokenizer) > encoder.config.vocab_size:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the text encoder only {encoder.config.vocab_size}"
        )
    text_config = dataclasses.replace(config.text, hf_config=canonical_hf_config(encoder))
    config = dataclasses.replace(config, text=text_config)
    return _assemble(config, clip, HFTextTower(encoder, tokenizer, config))


def _assemble(config: ModelConfig, clip: open_clip.CLIP | torch.nn.Module, text: HFTextTower | None
              ) -> VideoTextModel:
    """The model from an open_clip CLIP (frames and its own text) or a vision tower plus an HF tower."""
    if text is None:
        return VideoTextModel(config, clip.visual, OpenClipTextTower(clip, config.max_tokens),
                              build_temporal(config)).eval()
    visual = clip.visual if isinstance(clip, open_clip.CLIP) else clip
    return VideoTextModel(config, visual, text, build_temporal(config)).eval()


# -- pretrained towers -------------------------------------------------------------------------


def load_openclip_weights(clip: open_clip.CLIP, path: str | Path, config: ModelConfig) -> None:
    """Load a full open_clip/OpenAI CLIP weights file (.pt, .bin, .safetensors, TorchScript) into ``clip``."""
    path = Path(path)
    expected = f"open_clip CLIP weights for {_describe(config)}"
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found; expected {expected}")
    try:
        if is_torchscript(path):
            clip.load_state_dict(_torchscript_state(path, clip), strict=True)
        else:
            # open_clip's own loader: unwraps 'state_dict'/'module.', converts third-party layouts,
            # resizes position embeddings; loads tensors only (weights_only=True).
            open_clip.load_checkpoint(clip, str(path), strict=True, weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for bad files
        raise CheckpointError(f"{path}: cannot load as {expected}: {_detail(exc)}") from exc


def is_torchscript(path: Path) -> bool:
    # OpenAI's original .pt files are TorchScript archives, which torch.load(weights_only=True) refuses.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def torchscript_state(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a TorchScript archive such as OpenAI's original CLIP ``.pt`` files."""
    with warnings.catch_warnings():
        # torch.jit is deprecated (a FutureWarning or DeprecationWarning by version); these files still exist.
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
        return torch.jit.load(str(path), map_location="cpu").state_dict()


def _torchscript_state(path: Path, clip: open_clip.CLIP) -> dict[str, torch.Tensor]:
    state = torchscript_state(path)
    # TorchScript keeps non-persistent buffers and OpenAI's bookkeeping ints in its state dict.
    wanted = clip.state_dict().keys()
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items() if k in wanted}


def load_hf_text_dir(directory: str | Path) -> tuple[torch.nn.Module, Any]:
    """A Hugging Face encoder and its tokenizer from a local ``save_pretrained`` directory."""
    from transformers import AutoModel

    root = Path(directory)
    if not root.is_dir():
        # Checked first: a missing path would otherwise be taken for a hub repo name.
        raise CheckpointError(f"{root}: directory not found; expected a Hugging Face save_pretrained dir")
    if not (root / "config.json").is_file():
        raise CheckpointError(f"{root / 'config.json'}: missing; expected the Hugging Face model config")
    if not any((root / name).is_file() for name in _HF_WEIGHT_FILES):
        raise CheckpointError(f"{root / 'model.safetensors'}: missing; expected the text encoder's weights")
    try:
        encoder, info = AutoModel.from_pretrained(
            root, local_files_only=True, dtype=torch.float32, output_loading_info=True
        )
    except Exception as exc:
        raise CheckpointError(f"{root}: cannot load the Hugging Face text encoder: {_detail(exc)}") from exc
    # A checkpoint saved from a task head (e.g. BertForMaskedLM) lacks the pooler, which we never use.
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("pooler."))
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise CheckpointError(
            f"{root}: the Hugging Face weights do not fit their config.json: "
            f"missing {missing[:5]}, mismatched {mismatched[:5]}"
        )
    return encoder, load_tokenizer(root, encoder.config.vocab_size)


# -- the project checkpoint --------------------------------------------------------------------


def save_checkpoint(model: VideoTextModel, directory: str | Path) -> Path:
    """Write ``model`` as a checkpoint directory, replacing an earlier checkpoint there atomically."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()) and not (root / CONFIG_FILE).is_file():
        raise ValueError(f"{root} is not empty and holds no checkpoint; refusing to replace it")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        state = _float32_cpu_state(model)
        model_id = compute_model_id(model.config, state)
        document = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_id": model_id,
                    "config": model.config.to_dict()}
        (staging / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT, "model_id": model_id})
        _save_tokenizer(model, staging / TOKENIZER_DIR)
        _make_readable(staging)
        _swap_into_place(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def load_checkpoint(
    directory: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> VideoTextModel:
    """Load a checkpoint directory in eval mode on ``device`` (default: CUDA if present, else CPU).

    ``dtype`` defaults to float16 on CUDA and float32 on CPU; ``model_id`` is that of the stored
    float32 weights either way.
    """
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(
            f"{root}: not a directory; expected a checkpoint with {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    config, recorded_id = _read_config(root / CONFIG_FILE)
    state = _read_weights(root / WEIGHTS_FILE)
    text = None
    if config.text.kind == "hf":
        if config.text.hf_config is None:
            raise CheckpointError(f"{root / CONFIG_FILE}: no text.hf_config; expected the HF architecture")
        try:
            encoder = hf_encoder_from_config(config.text.hf_config)
        except Exception as exc:
            raise CheckpointError(f"{root / CONFIG_FILE}: text.hf_config is not a usable HF config: "
                                  f"{_detail(exc)}") from exc
        tokenizer = load_tokenizer(root / TOKENIZER_DIR, encoder.config.vocab_size)
        text = HFTextTower(encoder, tokenizer, config)
        # Only the frame encoder of the open_clip architecture is needed.
        model = _assemble(config, build_visual(config), text)
    else:
        _check_openclip_marker(root / TOKENIZER_DIR / OPENCLIP_TOKENIZER_FILE)
        model = _assemble(config, build_openclip(config), None)
    _load_state(model, state, root / WEIGHTS_FILE)
    if recorded_id is not None and model.model_id != recorded_id:
        raise CheckpointError(
            f"{root / WEIGHTS_FILE}: weights hash to model id {model.model_id}, but {CONFIG_FILE} records "
            f"{recorded_id}; the file was changed or corrupted after saving"
        )
    runtime = select_runtime(device)
    return model.to_runtime(Runtime(runtime.device, dtype or runtime.dtype))


def recorded_model_id(root: str | Path) -> str | None:
    """The model id a checkpoint directory's config records, read without loading the weights."""
    return _read_config(Path(root) / CONFIG_FILE)[1]


def _read_config(path: Path) -> tuple[ModelConfig, str | None]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; expected the model config written by save_checkpoint")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not readable JSON: {_detail(exc)}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{path}: expected a JSON object with format {FORMAT!r}")
    if document.get("format_version") != FORMAT_VERSION:
        version = document.get("format_version")
        raise CheckpointError(f"{path}: format_version {version!r} is unsupported; expected {FORMAT_VERSION}")
    try:
        config = ModelConfig.from_dict(document.get("config"))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: invalid model config: {_detail(exc)}") from exc
    recorded_id = document.get("model_id")
    return config, recorded_id if isinstance(recorded_id, str) else None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; expected the model weights in safetensors format")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError, OSError, ...
        raise CheckpointError(f"{path}: not a readable safetensors file: {_detail(exc)}") from exc


def _load_state(model: VideoTextModel, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{name} {tuple(state[name].shape)} (expected {tuple(tensor.shape)})"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    if missing or unexpected or wrong:
        problems = [
            f"missing {missing[:3]}" if missing else "",
            f"unexpected {unexpected[:3]}" if unexpected else "",
            f"wrong shapes {wrong[:3]}" if wrong else "",
        ]
        summary = "; ".join(p for p in problems if p)
        raise CheckpointError(f"{path}: weights do not match the architecture in {CONFIG_FILE}: {summary}")
    model.load_state_dict(state, strict=True)


def _float32_cpu_state(model: VideoTextModel) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        dtype = torch.float32 if tensor.is_floating_point() else tensor.dtype
        t = tensor.detach().to("cpu", dtype).contiguous()
        # safetensors refuses tensors that share memory (tied weights, slices): give each its own.
        if t.data_ptr() in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add(t.data_ptr())
        state[name] = t
    return state


def _save_tokenizer(model: VideoTextModel, directory: Path) -> None:
    directory.mkdir()
    if isinstance(model.text, HFTextTower):
        model.text.tokenizer.save_pretrained(str(directory))
    else:
        marker = {"tokenizer": "open_clip.SimpleTokenizer", "context_length": model.config.max_tokens}
        (directory / OPENCLIP_TOKENIZER_FILE).write_text(json.dumps(marker, sort_keys=True) + "\n")


def load_tokenizer(directory: Path, vocab_size: int) -> Any:
    from transformers import AutoTokenizer

    if not directory.is_dir():
        raise CheckpointError(f"{directory}: missing; expected the HF tokenizer saved with save_pretrained")
    if not any((directory / name).is_file() for name in _TOKENIZER_VOCAB_FILES):
        raise CheckpointError(
            f"{directory / 'tokenizer.json'}: missing; expected a tokenizer vocabulary (one of "
            f"{', '.join(_TOKENIZER_VOCAB_FILES)})"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{directory}: cannot load the HF tokenizer: {_detail(exc)}") from exc
    if len(tokenizer) > vocab_size:
        raise CheckpointError(
            f"{directory}: tokenizer has {len(tokenizer)} tokens but the text encoder embeds {vocab_size}"
        )
    return tokenizer


def _check_openclip_marker(path: Path) -> None:
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: missing or unreadable; expected the open_clip tokenizer marker") \
            from exc
    if not isinstance(marker, dict) or marker.get("tokenizer") != "open_clip.SimpleTokenizer":
        raise CheckpointError(f"{path}: expected tokenizer 'open_clip.SimpleTokenizer'")


def _make_readable(root: Path) -> None:
    # mkdtemp (and safetensors) create owner-only files; a serving process may run as another user.
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _swap_into_place(staging: Path, root: Path) -> None:
    if not root.exists():
        staging.rename(root)
        return
    retired = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
    root.rename(retired)
    staging.rename(root)
    shutil.rmtree(retired, ignore_errors=True)


def _describe(config: ModelConfig) -> str:
    vision = config.vision
    if vision.openclip_name:
        return f"{vision.openclip_name} at {vision.image_size}px, embed_dim {config.embed_dim}"
    return (f"a custom ViT (width {vision.width}, {vision.layers} layers, patch {vision.patch_size}, "
            f"{vision.image_size}px), embed_dim {config.embed_dim}")


def _detail(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."

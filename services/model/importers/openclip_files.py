"""OpenAI CLIP TorchScript ``.pt`` files and open_clip state dicts (``.bin``, ``.pt``, ``.safetensors``).

A state dict does not say which architecture made it: ``arch`` is an open_clip model name
(``ViT-B-32-quickgelu``, ``xlm-roberta-base-ViT-B-32``, ...) or the path of an open_clip model
config JSON; without one it is inferred from the tensor shapes, taking OpenAI's QuickGELU variant
for the sizes OpenAI published.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.factory import load_state_dict

from services.model.checkpoint import (
    CheckpointError,
    is_torchscript,
    load_openclip_weights,
    load_tokenizer,
    torchscript_state,
)
from services.model.config import OPENCLIP_CONTEXT_LENGTH, ModelConfig, TextConfig, VisionConfig
from services.model.importers.parts import TextPart, VisionPart, load_exact, take
from services.model.towers import build_openclip, build_visual, canonical_hf_config

# (width, patch, image size) of published ViTs -> the open_clip name used when --vision-arch is not given.
_KNOWN_VITS = {
    (768, 32, 224): "ViT-B-32-quickgelu",
    (768, 16, 224): "ViT-B-16-quickgelu",
    (1024, 14, 224): "ViT-L-14-quickgelu",
    (1024, 14, 336): "ViT-L-14-336-quickgelu",
    (1280, 14, 224): "ViT-H-14",
}
_KNOWN_HF_TEXT_VITS = {(768, 32, 224): "xlm-roberta-base-ViT-B-32", (1280, 14, 224): "xlm-roberta-large-ViT-H-14"}
_VISION_KEYS = {"image_size", "layers", "width", "patch_size", "head_width", "mlp_ratio"}
_HF_POOLERS = {"mean_pooler": "mean", "cls_last_hidden_state_pooler": "cls"}
_HF_PROJECTIONS = {"mlp": "mlp", "linear": "linear-nobias"}


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of an open_clip/OpenAI weights file, float32, without DDP or 'state_dict' wrapping."""
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found; expected open_clip or OpenAI CLIP weights")
    try:
        state = torchscript_state(path) if is_torchscript(path) else load_state_dict(str(path), weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for bad files
        raise CheckpointError(f"{path}: cannot read as open_clip or OpenAI CLIP weights: {exc}") from exc
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def resolve_arch(state: dict[str, torch.Tensor], arch: str | None, path: Path) -> tuple[str | None, dict[str, Any]]:
    """(open_clip name or None for a JSON file, the model config dict) for a state dict."""
    if arch is not None and Path(arch).suffix == ".json":
        return None, json.loads(Path(arch).read_text(encoding="utf-8"))
    if arch is None:
        arch = _infer_name(state, path)
    named = open_clip.get_model_config(arch)
    if named is None:
        raise CheckpointError(f"--vision-arch {arch!r} is not an open_clip model name or model config JSON file")
    return arch, dict(named)


def _infer_name(state: dict[str, torch.Tensor], path: Path) -> str:
    try:
        width, _, patch, _ = state["visual.conv1.weight"].shape
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    except KeyError as exc:
        raise CheckpointError(f"{path}: no {exc.args[0]}; expected a CLIP ViT state dict") from exc
    hf_text = any(k.startswith("text.transformer.") for k in state)
    names = _KNOWN_HF_TEXT_VITS if hf_text else _KNOWN_VITS
    name = names.get((width, patch, grid * patch))
    if name is None:
        raise CheckpointError(f"{path}: a ViT of width {width}, patch {patch}, {grid * patch}px is not one "
                              f"vidsearch recognises; name its open_clip architecture with --vision-arch")
    return name


def vision_config(name: str | None, model_cfg: dict[str, Any]) -> VisionConfig:
    """The vidsearch VisionConfig of an open_clip architecture, with CLIP's preprocessing recorded."""
    quick_gelu = bool(model_cfg.get("quick_gelu", False))
    vision = model_cfg["vision_cfg"]
    preprocessing = {"image_mean": tuple(OPENAI_DATASET_MEAN), "image_std": tuple(OPENAI_DATASET_STD),
                     "resize": "shortest-center-crop"}
    if isinstance(vision.get("image_size"), list | tuple):
        raise CheckpointError(f"open_clip architecture {name!r}: non-square images are not supported")
    if name is not None and open_clip.get_model_config(name.removesuffix("-quickgelu")) is not None:
        base = name.removesuffix("-quickgelu")
        return VisionConfig(openclip_name=base, image_size=vision["image_size"], quick_gelu=quick_gelu, **preprocessing)
    extra = set(vision) - _VISION_KEYS
    if extra or vision.get("mlp_ratio", 4.0) != 4.0:
        raise CheckpointError(f"open_clip architecture {name or 'config'}: vision options {sorted(extra)} "
                              "are not supported")
    width = vision["width"]
    return VisionConfig(openclip_name=None, image_size=vision["image_size"], patch_size=vision["patch_size"],
                        width=width, layers=vision["layers"], heads=width // vision.get("head_width", 64),
                        quick_gelu=quick_gelu, **preprocessing)


def import_vision(path: Path, arch: str | None) -> VisionPart:
    """The vision tower of an open_clip/OpenAI CLIP weights file (its text weights are ignored)."""
    state = read_state(path)
    return _vision(state, *resolve_arch(state, arch, path), path)


def _vision(state: dict[str, torch.Tensor], name: str | None, model_cfg: dict[str, Any], path: Path) -> VisionPart:
    config = ModelConfig(vision=vision_config(name, model_cfg), text=TextConfig(kind="hf"),
                         embed_dim=model_cfg["embed_dim"])
    visual = build_visual(config)
    load_exact(visual, take(state, "visual."), path, "vision tower")
    return VisionPart(config.vision, config.embed_dim, visual, layout=_layout(path),
                      logit_scale=state.get("logit_scale"))


def import_clip(path: Path, arch: str | None, text_dir: Path | None) -> tuple[VisionPart, TextPart]:
    """Both towers of an open_clip/OpenAI CLIP file; a Hugging Face text tower needs ``text_dir``
    for its config and tokenizer."""
    state = read_state(path)
    name, model_cfg = resolve_arch(state, arch, path)
    if "hf_model_name" in model_cfg["text_cfg"]:
        if text_dir is None:
            raise CheckpointError(f"{path}: the text tower of {name or 'this architecture'} is a Hugging Face "
                                  f"{model_cfg['text_cfg']['hf_model_name']}; give its config and tokenizer "
                                  "directory with --text")
        return _vision(state, name, model_cfg, path), _hf_text(state, model_cfg, text_dir, path)
    config = _plain_config(name, model_cfg, path)
    clip = build_openclip(config)
    load_openclip_weights(clip, path, config)
    vision = VisionPart(config.vision, config.embed_dim, clip.visual, layout=_layout(path),
                        logit_scale=clip.logit_scale.detach().clone())
    text = TextPart(config.text, config.embed_dim, config.max_tokens, layout=_layout(path), clip=clip.eval())
    return vision, text


def _plain_config(name: str | None, model_cfg: dict[str, Any], path: Path) -> ModelConfig:
    vision = vision_config(name, model_cfg)
    text_cfg = model_cfg["text_cfg"]
    if vision.openclip_name is None:
        if (text_cfg.get("context_length", 77) != OPENCLIP_CONTEXT_LENGTH
                or text_cfg.get("vocab_size", 49408) != 49408 or set(text_cfg) - {"context_length", "vocab_size",
                                                                                 "width", "heads", "layers"}):
            raise CheckpointError(f"{path}: text options {sorted(text_cfg)} are not supported")
        text = TextConfig(kind="openclip", width=text_cfg["width"], heads=text_cfg["heads"],
                          layers=text_cfg["layers"])
    else:
        text = TextConfig(kind="openclip")
    return ModelConfig(vision=vision, text=text, embed_dim=model_cfg["embed_dim"],
                       max_tokens=OPENCLIP_CONTEXT_LENGTH)


def _hf_text(state: dict[str, torch.Tensor], model_cfg: dict[str, Any], text_dir: Path, path: Path) -> TextPart:
    from transformers import AutoConfig, AutoModel

    text_cfg = model_cfg["text_cfg"]
    pooler = text_cfg.get("hf_pooler_type", "mean_pooler")
    projection = text_cfg.get("hf_proj_type", "mlp")
    if pooler not in _HF_POOLERS or projection not in _HF_PROJECTIONS:
        raise CheckpointError(f"{path}: open_clip text pooler {pooler!r} / projection {projection!r} "
                              f"are not supported (supported: {sorted(_HF_POOLERS)}, {sorted(_HF_PROJECTIONS)})")
    try:
        hf_config = AutoConfig.from_pretrained(text_dir, local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{text_dir}: no readable Hugging Face config.json for the text tower") from exc
    encoder = AutoModel.from_config(hf_config, dtype=torch.float32)
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    load_exact(encoder, take(state, "text.transformer."), path, "text encoder")
    tokenizer = load_tokenizer(text_dir, hf_config.vocab_size)
    config = TextConfig(kind="hf", hf_config=canonical_hf_config(encoder), pooling=_HF_POOLERS[pooler],
                        projection=_HF_PROJECTIONS[projection], clean="whitespace")
    return TextPart(config, model_cfg["embed_dim"], text_cfg.get("context_length", OPENCLIP_CONTEXT_LENGTH),
                    layout=f"{_layout(path)} (Hugging Face text)", encoder=encoder, tokenizer=tokenizer,
                    projection=take(state, "text.proj."))


def _layout(path: Path) -> str:
    return "OpenAI TorchScript" if is_torchscript(path) else f"open_clip state dict ({path.suffix})"

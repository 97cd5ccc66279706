"""Hugging Face ``CLIPModel`` directories (``save_pretrained`` layout, e.g. Korean CLIPs).

The vision tower is rewritten into open_clip's ViT (the same maths under other names: q/k/v
joined into one in-projection, ``visual_projection`` transposed into ``proj``); the text tower
stays a Hugging Face ``CLIPTextModel`` pooled at its end-of-text token, with the trained
``text_projection``. Preprocessing comes from ``preprocessor_config.json``; its centre crop
splits an odd margin by flooring, unlike torchvision.
"""

from __future__ import annotations

from pathlib import Path

import torch
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from services.model.checkpoint import CheckpointError, load_tokenizer
from services.model.config import ModelConfig, TextConfig, VisionConfig
from services.model.importers.parts import TextPart, VisionPart, load_exact, model_type, read_json, take
from services.model.towers import build_visual, canonical_hf_config

_BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, as preprocessor_config.json stores it
_ACTIVATIONS = {"quick_gelu": True, "gelu": False}


def is_hf_clip(path: Path) -> bool:
    return model_type(path) == "clip"


def _load(path: Path):
    from transformers import CLIPModel

    try:
        return CLIPModel.from_pretrained(path, local_files_only=True, dtype=torch.float32).eval()
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load as a Hugging Face CLIPModel: {exc}") from exc


def import_clip(path: Path) -> tuple[VisionPart, TextPart]:
    """Both towers of a CLIPModel directory, read once."""
    model = _load(path)
    return _vision(model, path), _text(model, path)


def import_vision(path: Path) -> VisionPart:
    """The vision tower and visual projection of a CLIPModel directory, as an open_clip ViT."""
    return _vision(_load(path), path)


def import_text(path: Path) -> TextPart:
    """The text tower (``CLIPTextModel``) and trained ``text_projection`` of a CLIPModel directory."""
    return _text(_load(path), path)


def _vision(model, path: Path) -> VisionPart:
    vc = model.config.vision_config
    if vc.hidden_act not in _ACTIVATIONS or vc.intermediate_size != 4 * vc.hidden_size:
        raise CheckpointError(f"{path / 'config.json'}: vision activation {vc.hidden_act!r} with MLP size "
                              f"{vc.intermediate_size} is not supported (expected quick_gelu/gelu and 4 x width)")
    mean, std = _preprocessing(path, vc.image_size)
    vision = VisionConfig(openclip_name=None, image_size=vc.image_size, patch_size=vc.patch_size,
                          width=vc.hidden_size, layers=vc.num_hidden_layers, heads=vc.num_attention_heads,
                          quick_gelu=_ACTIVATIONS[vc.hidden_act], image_mean=mean, image_std=std,
                          resize="shortest-center-crop-floor")
    config = ModelConfig(vision=vision, text=TextConfig(kind="hf"), embed_dim=model.config.projection_dim)
    visual = build_visual(config)
    load_exact(visual, _openclip_vision_state(model), path, "vision tower")
    return VisionPart(vision, config.embed_dim, visual, layout="Hugging Face CLIPModel",
                      logit_scale=model.logit_scale.detach().clone())


def _text(model, path: Path) -> TextPart:
    from transformers import CLIPTextModel

    encoder = model.text_model  # a CLIPTextModel in transformers 5
    if not isinstance(encoder, CLIPTextModel):
        raise CheckpointError(f"{path}: expected CLIPModel.text_model to be a CLIPTextModel")
    tokenizer = load_tokenizer(path, encoder.config.vocab_size)
    config = TextConfig(kind="hf", hf_config=canonical_hf_config(encoder), pooling="eos", projection="linear-nobias")
    return TextPart(config, model.config.projection_dim, encoder.config.max_position_embeddings,
                    layout="Hugging Face CLIPModel", encoder=encoder, tokenizer=tokenizer,
                    projection=model.text_projection.state_dict())


def _preprocessing(path: Path, image_size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std from preprocessor_config.json, after checking it resizes and crops as we do."""
    file = path / "preprocessor_config.json"
    if not file.is_file():
        return tuple(OPENAI_DATASET_MEAN), tuple(OPENAI_DATASET_STD)
    cfg = read_json(file, "the image processor config")
    size = cfg.get("size", {})
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size
    crop = cfg.get("crop_size", image_size)
    crop = crop.get("height") if isinstance(crop, dict) else crop
    resizes_as_we_do = (shortest == image_size and crop == image_size and cfg.get("do_center_crop", True)
                        and cfg.get("resample", _BICUBIC) == _BICUBIC and cfg.get("do_resize", True))
    if not resizes_as_we_do:
        raise CheckpointError(f"{file}: resize {size} / crop {cfg.get('crop_size')} / resample "
                              f"{cfg.get('resample')} differ from bicubic shortest-side resize and centre crop to "
                              f"{image_size}px, the only preprocessing supported")
    return (tuple(cfg.get("image_mean", OPENAI_DATASET_MEAN)), tuple(cfg.get("image_std", OPENAI_DATASET_STD)))


def _openclip_vision_state(model) -> dict[str, torch.Tensor]:
    hf = {k: v.detach() for k, v in model.vision_model.state_dict().items()}
    out = {
        "class_embedding": hf["embeddings.class_embedding"],
        "positional_embedding": hf["embeddings.position_embedding.weight"],
        "conv1.weight": hf["embeddings.patch_embedding.weight"],
        "ln_pre.weight": hf["pre_layrnorm.weight"], "ln_pre.bias": hf["pre_layrnorm.bias"],
        "ln_post.weight": hf["post_layernorm.weight"], "ln_post.bias": hf["post_layernorm.bias"],
        "proj": model.visual_projection.weight.detach().T.contiguous(),
    }
    for i in range(model.config.vision_config.num_hidden_layers):
        layer = take(hf, f"encoder.layers.{i}.")
        block = f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{block}attn.in_proj_{kind}"] = torch.cat(
                [layer[f"self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])
            for ours, theirs in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                                 ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                out[f"{block}{ours}.{kind}"] = layer[f"{theirs}.{kind}"]
    return out

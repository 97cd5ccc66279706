"""The frame encoder and the two kinds of text tower, built from a ``ModelConfig``.

Frames go through open_clip's vision transformer. Text goes through either open_clip's own
causal text transformer (English CLIP, BPE tokenizer) or any Hugging Face encoder with
CLS/mean/end-of-text pooling and a projection (new, or a published one kept as trained).
Nothing here downloads: weights come from local files in ``checkpoint.py`` and ``importers/``.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import open_clip
import torch
from torch import nn

from services.model.config import OPENCLIP_CONTEXT_LENGTH, ModelConfig

TokenBatch = dict[str, torch.Tensor]

# transformers bookkeeping that says nothing about the architecture; left out so the model id
# does not change with the library version or with where the weights were read from.
_VOLATILE_HF_KEYS = ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype")


def openclip_architecture(config: ModelConfig) -> dict[str, Any]:
    """Keyword arguments for ``open_clip.CLIP`` at the text transformer's native context length."""
    vision = config.vision
    if vision.openclip_name is None:
        vision_cfg: dict[str, Any] = {
            "image_size": vision.image_size,
            "patch_size": vision.patch_size,
            "width": vision.width,
            "layers": vision.layers,
            "head_width": vision.width // vision.heads,
        }
        text = config.text
        text_cfg: dict[str, Any] = {
            "context_length": OPENCLIP_CONTEXT_LENGTH,
            "width": text.width,
            "heads": text.heads,
            "layers": text.layers,
        }
    else:
        named = open_clip.get_model_config(vision.openclip_name)
        if named is None:
            raise ValueError(f"unknown open_clip architecture {vision.openclip_name!r}")
        vision_cfg = dict(named["vision_cfg"])
        text_cfg = dict(named["text_cfg"])
        # With a Hugging Face text tower only the vision side of the named architecture is built.
        hf_text = config.text.kind == "hf"
        unsupported = ("timm_model_name" in vision_cfg or "multimodal_cfg" in named
                       or (not hf_text and ("hf_model_name" in text_cfg or named.get("custom_text"))))
        if unsupported:
            raise ValueError(f"open_clip architecture {vision.openclip_name!r} is not a plain CLIP")
        vision_cfg["image_size"] = vision.image_size
    return {
        "embed_dim": config.embed_dim,
        "vision_cfg": vision_cfg,
        "text_cfg": text_cfg,
        "quick_gelu": vision.quick_gelu,
    }


def build_openclip(config: ModelConfig) -> open_clip.CLIP:
    """A randomly initialised open_clip CLIP; the model keeps its ``.visual`` and maybe its text parts."""
    return open_clip.CLIP(**openclip_architecture(config))


def build_visual(config: ModelConfig) -> nn.Module:
    """A randomly initialised open_clip vision tower alone, as ``CLIP(...).visual`` would be."""
    from open_clip.model import _build_vision_tower

    arch = openclip_architecture(config)
    return _build_vision_tower(arch["embed_dim"], arch["vision_cfg"], quick_gelu=arch["quick_gelu"])


class OpenClipTextTower(nn.Module):
    """open_clip's causal text transformer, cut to ``max_tokens`` positions as CLIP4Clip does."""

    def __init__(self, clip: open_clip.CLIP, max_tokens: int) -> None:
        super().__init__()
        if getattr(clip, "text_pool_type", "argmax") != "argmax":
            raise ValueError("only open_clip text towers that pool at the end-of-text token are supported")
        self.max_tokens = max_tokens
        self.token_embedding = clip.token_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        # The first max_tokens learned positions; the rest are never used with shorter inputs.
        self.positional_embedding = nn.Parameter(clip.positional_embedding.detach()[:max_tokens].clone())
        causal = torch.full((max_tokens, max_tokens), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", causal, persistent=False)
        self.tokenizer = _simple_tokenizer(max_tokens)

    def tokenize(self, texts: list[str]) -> TokenBatch:
        # SimpleTokenizer truncates to max_tokens and keeps the end-of-text token last.
        return {"input_ids": self.tokenizer(texts)}

    def forward(self, tokens: TokenBatch) -> torch.Tensor:
        ids = tokens["input_ids"]
        length = ids.shape[1]
        x = self.token_embedding(ids)
        x = x + self.positional_embedding[:length].to(x.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        x = self.ln_final(x)
        # The end-of-text token has the largest id in CLIP's vocabulary.
        x = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection

    def new_parameters(self) -> list[nn.Parameter]:
        return []


@functools.cache
def _simple_tokenizer(context_length: int) -> open_clip.SimpleTokenizer:
    # Reading the 49k BPE merges costs ~0.1 s; towers of the same length share one instance.
    return open_clip.SimpleTokenizer(context_length=context_length)


class HFTextTower(nn.Module):
    """A Hugging Face encoder, pooled (CLS, masked mean or its end-of-text output) and projected
    into the joint space by a new layer or by the source model's trained projection."""

    def __init__(self, encoder: nn.Module, tokenizer: Any, config: ModelConfig) -> None:
        super().__init__()
        text = config.text
        # The pooler head is never used (we pool ourselves); dropping it keeps its weights out of
        # checkpoints and out of the optimiser.
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_tokens = config.max_tokens
        self.pooling = text.pooling
        self.projection = text.projection
        self.proj = build_text_projection(text.projection, encoder.config.hidden_size, config.embed_dim)
        self.activation = nn.Tanh() if text.projection_activation == "tanh" else nn.Identity()
        self._clean = None
        if text.clean == "lowercase":
            self._clean = str.lower
        elif text.clean is not None:
            from open_clip.tokenizer import get_clean_fn

            self._clean = get_clean_fn(text.clean)

    def tokenize(self, texts: list[str]) -> TokenBatch:
        if self._clean is not None:
            texts = [self._clean(t) for t in texts]
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, tokens: TokenBatch) -> torch.Tensor:
        mask = tokens["attention_mask"]
        output = self.encoder(input_ids=tokens["input_ids"], attention_mask=mask)
        hidden = output.last_hidden_state
        if self.pooling == "eos":
            pooled = output.pooler_output  # CLIPTextModel: the final state at the end-of-text token
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.activation(self.proj(pooled))

    def new_parameters(self) -> list[nn.Parameter]:
        return list(self.proj.parameters()) if self.projection == "new-linear" else []


def build_text_projection(kind: str, width: int, embed_dim: int) -> nn.Module:
    """The layer(s) named by ``TextConfig.projection``, randomly initialised."""
    if kind in ("new-linear", "linear"):
        return nn.Linear(width, embed_dim)
    if kind == "linear-nobias":
        return nn.Linear(width, embed_dim, bias=False)
    # open_clip's HFTextEncoder 'mlp' projection, module for module (so its state dict keys match).
    hidden = (width + embed_dim) // 2
    return nn.Sequential(nn.Linear(width, hidden, bias=False), nn.GELU(), nn.Linear(hidden, embed_dim, bias=False))


def hf_encoder_from_config(hf_config: dict[str, Any]) -> nn.Module:
    """A randomly initialised HF encoder for an architecture dict (weights are loaded afterwards)."""
    from transformers import AutoConfig, AutoModel

    fields = dict(hf_config)
    model_type = fields.pop("model_type")
    return AutoModel.from_config(AutoConfig.for_model(model_type, **fields), dtype=torch.float32)


def canonical_hf_config(encoder: nn.Module) -> dict[str, Any]:
    """The encoder's architecture as a plain dict: non-default fields plus ``model_type``."""
    fields = copy.deepcopy(encoder.config.to_diff_dict())
    for key in _VOLATILE_HF_KEYS:
        fields.pop(key, None)
    fields["model_type"] = encoder.config.model_type
    return fields

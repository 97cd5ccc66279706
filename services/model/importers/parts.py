"""What each importer hands over: a vision part and a text part, with weights already loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from services.model.checkpoint import CheckpointError
from services.model.config import TextConfig, VisionConfig


@dataclass
class VisionPart:
    """An open_clip vision tower holding the source's weights, and how to preprocess its frames."""

    config: VisionConfig
    embed_dim: int
    visual: nn.Module
    layout: str
    logit_scale: torch.Tensor | None = None


@dataclass
class TextPart:
    """A text tower's architecture, its loaded encoder and tokenizer, and its trained projection.

    For open_clip's own text transformer ``clip`` holds the whole loaded CLIP instead.
    """

    config: TextConfig
    embed_dim: int
    max_tokens: int
    layout: str
    encoder: nn.Module | None = None
    tokenizer: Any = None
    projection: dict[str, torch.Tensor] = field(default_factory=dict)
    clip: Any = None


def read_json(path: Path, expected: str) -> dict[str, Any]:
    """A JSON object from ``path``; a missing or malformed file names itself and what was expected."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: missing or not readable JSON; expected {expected}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object ({expected})")
    return data


def read_json_list(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: missing or not readable JSON; expected the module list") from exc
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise CheckpointError(f"{path}: expected a JSON list of modules")
    return sorted(data, key=lambda m: m.get("idx", 0))


def model_type(directory: Path) -> str | None:
    """``model_type`` of a Hugging Face directory's config.json, or None when there is none."""
    path = directory / "config.json"
    return read_json(path, "a Hugging Face config").get("model_type") if path.is_file() else None


def take(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_exact(module: nn.Module, state: dict[str, torch.Tensor], source: Path, what: str) -> None:
    """Load ``state`` into ``module`` with every key present and no extra; errors name ``source``."""
    try:
        result = module.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{source}: the {what} weights do not fit the architecture: "
                              f"{' '.join(str(exc).split())[:300]}") from exc
    missing = [k for k in result.missing_keys if not k.startswith("pooler.")]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("pooler.")]
    if missing or unexpected:
        raise CheckpointError(f"{source}: the {what} weights do not fit the architecture: "
                              f"missing {missing[:4]}, unexpected {unexpected[:4]}")

"""Reading a Hugging Face-style weights file from a directory, and a tokenizer's usable length."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from services.model.checkpoint import CheckpointError

_FILES = ("model.safetensors", "pytorch_model.bin")
# Models whose position ids start after the padding index, so two positions are never used for tokens.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors`` (preferred) or ``pytorch_model.bin`` in ``directory``."""
    for name in _FILES:
        path = directory / name
        if path.is_file():
            try:
                if name.endswith(".safetensors"):
                    return load_file(str(path), device="cpu")
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # safetensors and torch raise many types for bad files
                raise CheckpointError(f"{path}: not a readable weights file: {exc}") from exc
    raise CheckpointError(f"{directory / _FILES[0]}: missing; expected the weights ({' or '.join(_FILES)})")


def usable_length(tokenizer: Any, encoder_config: Any) -> int:
    """The longest token sequence both the tokenizer and the encoder's position table accept."""
    positions = encoder_config.max_position_embeddings
    if encoder_config.model_type in _OFFSET_POSITIONS:
        positions -= encoder_config.pad_token_id + 1
    return int(min(positions, tokenizer.model_max_length))

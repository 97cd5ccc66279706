"""Temporal aggregation of per-frame embeddings into one clip embedding (CLIP4Clip section 3.2).

Both aggregators take ``frames [b, T, d]`` and a boolean ``mask [b, T]`` (True = a real frame)
and return L2-normalised float32 ``[b, d]``; padded frames never influence the result.
Normalising and averaging run in float32: in float16, ``F.normalize``'s epsilon underflows and a
zero (padded) frame becomes NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from services.encoder.model.config import ModelConfig


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid frames of each clip; whatever padded frames hold (even NaN) is ignored."""
    keep = mask.unsqueeze(-1)
    total = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)
    return total / keep.sum(dim=1).clamp(min=1).to(x.dtype)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


class MeanPooling(nn.Module):
    """Parameter-free meanP: normalise each frame, average the valid ones, normalise again."""

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _unit(masked_mean(_unit(frames), mask))


class SequenceTransformer(nn.Module):
    """seqTransf: learned frame positions, a small transformer over the frames, a residual back to
    the frame embeddings, then meanP over the valid frames."""

    def __init__(self, dim: int, num_frames: int, layers: int, heads: int | None = None) -> None:
        super().__init__()
        heads = heads or max(1, dim // 64)
        self.frame_position = nn.Parameter(torch.empty(num_frames, dim))
        nn.init.normal_(self.frame_position, std=0.01)
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=heads,
            dim_feedforward=4 * dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,  # pre-LN like the CLIP blocks CLIP4Clip stacks here
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        steps = frames.shape[1]
        if steps > self.frame_position.shape[0]:
            raise ValueError(f"{steps} frames exceed the {self.frame_position.shape[0]} learned positions")
        x = frames + self.frame_position[:steps].to(frames.dtype)
        x = self.encoder(x, src_key_padding_mask=~mask)
        return _unit(masked_mean(_unit(x + frames), mask))


def build_temporal(config: ModelConfig) -> nn.Module:
    if config.temporal == "meanP":
        return MeanPooling()
    return SequenceTransformer(config.embed_dim, config.num_frames, config.seq_layers)

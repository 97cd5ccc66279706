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

from services.model.config import ModelConfig


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


def frame_steps(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each valid frame minus the valid frame before it; zero for a clip's first valid frame and padding.

    Played backwards, a clip's steps come back negated and in reverse order, so their sum flips
    sign: unlike positions, which enter only through attention, steps carry the direction of
    motion to the pooled output at first order.
    """
    steps = frames.shape[1]
    index = torch.arange(steps, device=frames.device).expand_as(mask)
    latest = torch.where(mask, index, torch.full_like(index, -1)).cummax(dim=1).values
    previous = torch.cat([torch.full_like(latest[:, :1], -1), latest[:, :-1]], dim=1)
    has_previous = mask & (previous >= 0)
    before = torch.gather(frames, 1, previous.clamp(min=0).unsqueeze(-1).expand_as(frames))
    return torch.where(has_previous.unsqueeze(-1), frames - before, torch.zeros((), dtype=frames.dtype,
                                                                                 device=frames.device))


class SequenceTransformer(nn.Module):
    """seqTransf: learned frame positions, a small transformer over the frames, a residual back to
    the frame embeddings, then meanP over the valid frames.

    With ``motion``, each frame's token also gets a learned projection of `frame_steps`. CLIP4Clip's
    seqTransf sees order only through positions added to frame features about 50 times their size
    and then layer-normalised; trained from scratch on motion-twin captions, it stayed order-blind.
    """

    def __init__(self, dim: int, num_frames: int, layers: int, heads: int | None = None,
                 motion: bool = False) -> None:
        super().__init__()
        heads = heads or max(1, dim // 64)
        self.frame_position = nn.Parameter(torch.empty(num_frames, dim))
        nn.init.normal_(self.frame_position, std=0.01)
        self.frame_motion = nn.Linear(dim, dim) if motion else None
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
        if self.frame_motion is not None:
            x = x + self.frame_motion(frame_steps(frames, mask))
        x = self.encoder(x, src_key_padding_mask=~mask)
        return _unit(masked_mean(_unit(x + frames), mask))


def build_temporal(config: ModelConfig) -> nn.Module:
    if config.temporal == "meanP":
        return MeanPooling()
    return SequenceTransformer(config.embed_dim, config.num_frames, config.seq_layers, motion=config.seq_motion)

"""The CLIP4Clip-style video-text model: text, clips and still images in one embedding space.

Every ``encode_*`` method returns L2-normalised float32 rows, whatever device and dtype the
model runs in, so the index can compare vectors from any encoder replica with the same
``model_id``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn

from services.common.errors import InvalidInput
from services.model.config import ModelConfig

MODEL_ID_CHARS = 16
_LOGIT_SCALE_MAX = math.log(100.0)  # CLIP's clamp: keeps the softmax temperature above 0.01
_FLOAT_RANGE_SLACK = 1e-3


@dataclass(frozen=True)
class Runtime:
    """Where and in which precision the model runs."""

    device: torch.device
    dtype: torch.dtype


def select_runtime(device: str | torch.device | None = None) -> Runtime:
    """CUDA in float16 when available (or asked for), CPU in float32 otherwise."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    return Runtime(device, torch.float16 if device.type == "cuda" else torch.float32)


def compute_model_id(config: ModelConfig, state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the canonical config JSON and every tensor (sorted by name, floats as float32)."""
    digest = hashlib.sha256(config.to_json().encode())
    for name in sorted(state):
        tensor = state[name].detach()
        if tensor.is_floating_point():
            tensor = tensor.float()
        tensor = tensor.to("cpu").contiguous().reshape(-1)
        digest.update(f"\n{name}:{tensor.dtype}:{tuple(state[name].shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy())
    return digest.hexdigest()[:MODEL_ID_CHARS]


class VideoTextModel(nn.Module):
    """Frame encoder + temporal aggregator for clips, a text tower for queries, and a learnable
    temperature for contrastive training."""

    def __init__(self, config: ModelConfig, visual: nn.Module, text: nn.Module, temporal: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.visual = visual
        self.text = text
        self.temporal = temporal
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        mean = config.vision.image_mean or OPENAI_DATASET_MEAN
        std = config.vision.image_std or OPENAI_DATASET_STD
        self.register_buffer("pixel_mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(3, 1, 1), persistent=False)
        self._model_id: str | None = None
        self._weights_fingerprint: tuple[Any, ...] | None = None

    # -- runtime -----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self.logit_scale.dtype

    @property
    def image_size(self) -> int:
        return self.config.vision.image_size

    def to_runtime(self, runtime: Runtime) -> VideoTextModel:
        """Move and cast for serving, keeping the model id of the full-precision weights."""
        model_id = self.model_id
        self.to(device=runtime.device, dtype=runtime.dtype)
        self._model_id, self._weights_fingerprint = model_id, self._fingerprint()
        return self

    def with_towers(self, visual: nn.Module | None = None, text: nn.Module | None = None) -> VideoTextModel:
        """Swap in serving replacements of the frame and text towers (e.g. ONNX Runtime sessions,
        ``services/encoder/fastpath.py``), keeping the model id of the weights they were built from."""
        model_id = self.model_id
        if visual is not None:
            self.visual = visual
        if text is not None:
            self.text = text
        self._model_id, self._weights_fingerprint = model_id, self._fingerprint()
        return self

    # -- identity ----------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """A short, stable hash of the config and weights, cached until any weight changes in place.

        Casting with ``to_runtime`` keeps the id; any other change of weights gives a new one.
        """
        fingerprint = self._fingerprint()
        if self._model_id is None or fingerprint != self._weights_fingerprint:
            self._model_id = compute_model_id(self.config, self.state_dict())
            self._weights_fingerprint = fingerprint
        return self._model_id

    def _fingerprint(self) -> tuple[Any, ...]:
        # Every in-place write (optimizer step, copy_, load_state_dict) bumps a tensor's version
        # counter, and replacing a tensor changes its storage, so this changes whenever weights do.
        entries = []
        for name, tensor in self.state_dict(keep_vars=True).items():
            try:
                version = tensor._version
            except RuntimeError:  # inference tensors keep no version counter
                version = -1
            entries.append((name, tensor.data_ptr(), version))
        return tuple(entries)

    # -- training ----------------------------------------------------------------------------

    def param_groups(self, pretrained_lr: float, new_lr: float) -> list[dict[str, Any]]:
        """Optimiser groups: pretrained towers at ``pretrained_lr``; the text projection of an HF
        tower, the temporal transformer and the logit scale at ``new_lr``."""
        new = (*self.text.new_parameters(), *self.temporal.parameters(), self.logit_scale)
        new_ids = {id(p) for p in new}
        pretrained = [p for p in self.parameters() if p.requires_grad and id(p) not in new_ids]
        new = [p for p in self.parameters() if p.requires_grad and id(p) in new_ids]
        groups = [
            {"name": "pretrained", "params": pretrained, "lr": pretrained_lr},
            {"name": "new", "params": new, "lr": new_lr},
        ]
        return [group for group in groups if group["params"]]

    def similarity_logits(self, text_emb: torch.Tensor, video_emb: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities ``[n_text, n_video]`` for the symmetric InfoNCE loss."""
        return self.logit_scale.clamp(max=_LOGIT_SCALE_MAX).exp() * text_emb @ video_emb.T

    def forward(
        self,
        texts: Sequence[str],
        frames: torch.Tensor | np.ndarray,
        mask: torch.Tensor | np.ndarray | None = None,
        reversed_from: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_text(texts), self.encode_frames(frames, mask, reversed_from)

    # -- encoding ----------------------------------------------------------------------------

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """``[n, embed_dim]`` for ``n`` query strings, truncated to ``config.max_tokens`` tokens."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise InvalidInput("texts must be a list of strings")
        if not texts:
            return torch.empty(0, self.config.embed_dim, device=self.device)
        tokens = {k: v.to(self.device) for k, v in self.text.tokenize(list(texts)).items()}
        return _unit_float32(self.text(tokens))

    def encode_frames(
        self, frames: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None,
        reversed_from: int | None = None,
    ) -> torch.Tensor:
        """``[b, embed_dim]`` for ``b`` clips of up to ``num_frames`` frames each.

        ``frames`` is uint8 RGB ``[b, T, H, W, 3]`` (0..255), float RGB of the same shape in
        [0, 1], or already-normalised float ``[b, T, 3, H, W]``, at ``image_size`` pixels.
        ``mask [b, T]`` marks real frames (default: all); padded frames are never encoded.
        ``reversed_from = n`` says clips ``n..2n-1`` are clips ``0..n-1`` played backwards (a
        training batch with time reversal): their frames are encoded once, not twice.
        """
        if reversed_from is not None:
            return self._encode_with_reversed(frames, mask, reversed_from)
        per_frame, valid = self._frame_features(frames, mask)
        if per_frame.shape[0] == 0:
            return torch.empty(0, self.config.embed_dim, device=self.device)
        return _unit_float32(self.temporal(per_frame, valid))

    def _frame_features(self, frames: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame embeddings ``[b, T, d]`` (zero where padded) and the valid-frame mask ``[b, T]``."""
        pixels = self._pixels(frames, leading_dims=2)
        b, steps = pixels.shape[:2]
        if b == 0:
            return pixels.new_zeros(0, steps, self.config.embed_dim), torch.zeros(0, steps, dtype=torch.bool)
        if steps > self.config.num_frames:
            raise InvalidInput(f"clips have {steps} frames; the model takes at most {self.config.num_frames}")
        valid = self._frame_mask(mask, b, steps)
        features = self.visual(pixels[valid])
        per_frame = features.new_zeros(b, steps, features.shape[-1])
        per_frame[valid] = features
        return per_frame, valid

    def _encode_with_reversed(self, frames: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None,
                              n: int) -> torch.Tensor:
        frames_t = torch.as_tensor(frames)
        mask_t = torch.ones(frames_t.shape[:2], dtype=torch.bool) if mask is None else torch.as_tensor(mask)
        if frames_t.shape[0] != 2 * n or not (torch.equal(frames_t[n:], frames_t[:n].flip(1))
                                              and torch.equal(mask_t[n:], mask_t[:n].flip(1))):
            raise ValueError(f"reversed_from={n}: clips {n}.. must be clips ..{n - 1} played backwards")
        per_frame, valid = self._frame_features(frames_t[:n], mask_t[:n])
        per_frame, valid = torch.cat([per_frame, per_frame.flip(1)]), torch.cat([valid, valid.flip(1)])
        return _unit_float32(self.temporal(per_frame, valid))

    def encode_images(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``[b, embed_dim]`` for still images, each treated as a clip of ``num_frames`` copies of itself.

        Under meanP this is just the normalised frame embedding; under seqTransf it passes through
        the temporal transformer, so image queries land where a static clip of that image would.
        """
        pixels = self._pixels(images, leading_dims=1)
        if pixels.shape[0] == 0:
            return torch.empty(0, self.config.embed_dim, device=self.device)
        features = self.visual(pixels)
        steps = self.config.num_frames
        per_frame = features.unsqueeze(1).expand(-1, steps, -1)
        valid = torch.ones(features.shape[0], steps, dtype=torch.bool, device=features.device)
        return _unit_float32(self.temporal(per_frame, valid))

    # -- preprocessing -------------------------------------------------------------------------

    def _pixels(self, frames: torch.Tensor | np.ndarray, leading_dims: int) -> torch.Tensor:
        """Normalised ``[*lead, 3, H, W]`` pixels in the model's dtype, on its device."""
        x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if not isinstance(x, torch.Tensor):
            raise InvalidInput(f"frames must be a tensor or numpy array, got {type(frames).__name__}")
        size = self.image_size
        lead = "[b, T" if leading_dims == 2 else "[b"
        if x.ndim != leading_dims + 3:
            raise InvalidInput(f"expected {lead}, H, W, 3] or {lead}, 3, H, W], got shape {tuple(x.shape)}")
        x = x.to(self.device)
        if x.shape[-1] == 3 and x.shape[-3:-1] == (size, size):  # raw RGB, channels last
            if x.dtype == torch.uint8:
                x = x.float() / 255.0
            elif x.is_floating_point():
                x = x.float()
                if x.numel() and (x.min() < -_FLOAT_RANGE_SLACK or x.max() > 1 + _FLOAT_RANGE_SLACK):
                    raise InvalidInput("float frames must be RGB in [0, 1]; pass uint8 for 0..255")
            else:
                raise InvalidInput(f"frames must be uint8 or float, got {x.dtype}")
            x = (x.movedim(-1, -3) - self.pixel_mean.float()) / self.pixel_std.float()
        elif x.shape[-3] == 3 and x.shape[-2:] == (size, size) and x.is_floating_point():
            pass  # already normalised, channels first
        else:
            raise InvalidInput(
                f"frames must be {size}x{size} RGB as {lead}, {size}, {size}, 3] uint8/float "
                f"or {lead}, 3, {size}, {size}] normalised float; got {tuple(x.shape)} {x.dtype}"
            )
        return x.to(self.dtype)

    def _frame_mask(self, mask: torch.Tensor | np.ndarray | None, b: int, steps: int) -> torch.Tensor:
        if mask is None:
            return torch.ones(b, steps, dtype=torch.bool, device=self.device)
        m = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask)
        if tuple(m.shape) != (b, steps):
            raise InvalidInput(f"mask must have shape {(b, steps)} to match the frames, got {tuple(m.shape)}")
        m = m.to(device=self.device).bool()
        if not bool(m.any(dim=1).all()):
            raise InvalidInput("every clip needs at least one valid frame")
        return m


def _unit_float32(x: torch.Tensor) -> torch.Tensor:
    # Normalise in float32: float16 norms of 512-d vectors lose enough precision to matter.
    return F.normalize(x.float(), dim=-1)

"""Runs a ``VideoTextModel`` for serving: numpy in, unit float32 numpy rows out, no autograd."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from services.model.clip4clip import VideoTextModel


class ModelRunner:
    """The batch functions the dynamic batchers call, one row per item, in item order."""

    def __init__(self, model: VideoTextModel, images: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 runtime: str = "torch") -> None:
        """``images`` replaces ``model.encode_images`` for image batches (e.g. `GraphedImages`);
        ``runtime`` names what runs the towers (``fastpath.apply_runtime`` already applied)."""
        self.model = model.eval()
        self._images = images or model.encode_images
        cfg = model.config
        self.model_id = model.model_id
        self.embed_dim = cfg.embed_dim
        self.num_frames = cfg.num_frames
        self.max_tokens = cfg.max_tokens
        self.image_size = cfg.vision.image_size
        self.crop = cfg.vision.crop
        self.temporal = cfg.temporal
        self.device = str(model.device)
        # onnx-int8 multiplies int8 weights by activations quantised to 8 bits per batch.
        self.dtype = "int8" if runtime == "onnx-int8" else str(model.dtype).removeprefix("torch.")
        self.runtime = runtime
        vision = cfg.vision.openclip_name or f"ViT-custom-{cfg.vision.image_size}px"
        text = "openclip-text" if cfg.text.kind == "openclip" else (cfg.text.hf_config or {}).get("model_type", "hf")
        on = "" if runtime == "torch" else f" on {runtime}"
        self.architecture = f"{vision} + {text} ({cfg.temporal_label}){on}"

    @staticmethod
    def _rows(tensor: torch.Tensor) -> list[np.ndarray]:
        return list(tensor.detach().to("cpu", torch.float32).numpy())

    def encode_texts(self, texts: list[str]) -> list[np.ndarray]:
        with torch.inference_mode():
            return self._rows(self.model.encode_text(texts))

    def encode_images(self, images: list[np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            return self._rows(self._images(torch.from_numpy(np.stack(images))))

    def encode_clips(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """Clips of 1..num_frames frames each; shorter clips are padded and masked."""
        t = max(c.shape[0] for c in clips)
        batch = np.zeros((len(clips), t, *clips[0].shape[1:]), dtype=np.uint8)
        mask = np.zeros((len(clips), t), dtype=bool)
        for i, clip in enumerate(clips):
            batch[i, : clip.shape[0]] = clip
            mask[i, : clip.shape[0]] = True
        with torch.inference_mode():
            return self._rows(self.model.encode_frames(batch, mask))

"""Choose the importer for each given path, pair the towers, and save the checkpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from services.model.checkpoint import CheckpointError, save_checkpoint
from services.model.clip4clip import VideoTextModel
from services.model.config import ModelConfig
from services.model.importers import hf_clip, mclip, openclip_files, sentence_transformers
from services.model.importers.parts import TextPart, VisionPart, model_type
from services.model.temporal import build_temporal
from services.model.towers import HFTextTower, OpenClipTextTower

NUM_FRAMES = 12  # CLIP4Clip's frames per clip


@dataclass(frozen=True)
class ImportResult:
    """What was imported: where to, its model id, the source layouts, and how long it took."""

    directory: Path
    model_id: str
    vision_layout: str
    text_layout: str
    seconds: float


def import_model(out: str | Path, *, clip: str | Path | None = None, vision: str | Path | None = None,
                 text: str | Path | None = None, vision_arch: str | None = None,
                 text_config: str | Path | None = None) -> ImportResult:
    """Import ``clip`` (both towers), or ``vision`` and ``text``, into a checkpoint at ``out``.

    With ``clip``, ``text`` is either another text tower to pair with its images, or (for
    open_clip's Hugging Face text architectures) the directory of that text model's config and
    tokenizer. ``vision_arch`` names an open_clip architecture for state dicts; ``text_config``
    is the base encoder's config directory of an M-CLIP model.
    """
    started = time.perf_counter()
    vision_part, text_part = _parts(_path(clip), _path(vision), _path(text), vision_arch, _path(text_config))
    if vision_part.embed_dim != text_part.embed_dim:
        raise CheckpointError(f"the image tower embeds into {vision_part.embed_dim} dimensions but the text tower "
                              f"into {text_part.embed_dim}; they were not trained together")
    model = assemble(vision_part, text_part)
    save_checkpoint(model, out)
    return ImportResult(Path(out), model.model_id, vision_part.layout, text_part.layout,
                        time.perf_counter() - started)


def assemble(vision: VisionPart, text: TextPart) -> VideoTextModel:
    """A meanP `VideoTextModel` from the two parts (a temporal transformer comes only with training)."""
    config = ModelConfig(vision=vision.config, text=text.config, embed_dim=vision.embed_dim,
                         num_frames=NUM_FRAMES, max_tokens=text.max_tokens, temporal="meanP")
    if text.clip is not None:
        tower = OpenClipTextTower(text.clip, config.max_tokens)
    else:
        tower = HFTextTower(text.encoder, text.tokenizer, config)
        missing = tower.proj.load_state_dict(text.projection, strict=False)
        if missing.missing_keys or missing.unexpected_keys:
            raise CheckpointError(f"the {text.layout} projection does not fit: missing {missing.missing_keys}, "
                                  f"unexpected {missing.unexpected_keys}")
    model = VideoTextModel(config, vision.visual, tower, build_temporal(config))
    if vision.logit_scale is not None:
        model.logit_scale.data.copy_(vision.logit_scale.reshape(()))
    return model.eval()


def _parts(clip: Path | None, vision: Path | None, text: Path | None, arch: str | None,
           text_config: Path | None) -> tuple[VisionPart, TextPart]:
    if clip is not None:
        if vision is not None:
            raise CheckpointError("give --clip, or --vision with --text, not both --clip and --vision")
        if clip.is_dir():
            if not hf_clip.is_hf_clip(clip):
                raise CheckpointError(f"{clip}: not a Hugging Face CLIPModel directory (config.json model_type 'clip')")
            if text is None:
                return hf_clip.import_clip(clip)
            return hf_clip.import_vision(clip), _text(text, text_config)
        if text is not None and not _is_hf_text_dir(text):
            return openclip_files.import_vision(clip, arch), _text(text, text_config)
        return openclip_files.import_clip(clip, arch, text)
    if vision is None or text is None:
        raise CheckpointError("give --clip PATH, or both --vision PATH and --text PATH")
    vision_part = hf_clip.import_vision(vision) if vision.is_dir() else openclip_files.import_vision(vision, arch)
    return vision_part, _text(text, text_config)


def _text(path: Path, text_config: Path | None) -> TextPart:
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory; expected a sentence-transformers, M-CLIP or Hugging Face "
                              "CLIPModel text model")
    if sentence_transformers.is_sentence_transformers(path):
        return sentence_transformers.import_text(path)
    if mclip.is_mclip(path):
        return mclip.import_text(path, text_config)
    if hf_clip.is_hf_clip(path):
        return hf_clip.import_text(path)
    raise CheckpointError(f"{path}: not a text model vidsearch can import (no modules.json, and config.json's "
                          "model_type is neither 'M-CLIP' nor 'clip')")


def _is_hf_text_dir(path: Path) -> bool:
    """A plain Hugging Face model directory: the config and tokenizer of an open_clip HF text tower."""
    if not path.is_dir() or sentence_transformers.is_sentence_transformers(path):
        return False
    return model_type(path) not in (None, "M-CLIP", "clip")


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)

"""M-CLIP text towers (``MultilingualCLIP``: a Hugging Face encoder, masked mean pooling, and the
trained ``LinearTransformation`` into the image tower's space).

The directory holds M-CLIP's ``config.json`` (``model_type`` "M-CLIP", ``modelBase``,
``transformerDimensions``, ``numDims``), its weights and tokenizer. ``modelBase`` names the base
encoder; when it is a hub name, ``base_dir`` supplies that encoder's ``config.json``.
"""

from __future__ import annotations

from pathlib import Path

from services.model.checkpoint import CheckpointError, load_tokenizer
from services.model.config import TextConfig
from services.model.importers.parts import TextPart, load_exact, model_type, read_json, take
from services.model.importers.weights import read_weights, usable_length
from services.model.towers import canonical_hf_config


def is_mclip(path: Path) -> bool:
    return model_type(path) == "M-CLIP"


def import_text(path: Path, base_dir: Path | None) -> TextPart:
    from transformers import AutoConfig, AutoModel

    cfg = read_json(path / "config.json", "M-CLIP's config")
    base = Path(base_dir) if base_dir is not None else Path(str(cfg.get("modelBase", "")))
    if not (base / "config.json").is_file():
        raise CheckpointError(f"{path / 'config.json'}: modelBase {cfg.get('modelBase')!r} is not a local directory; "
                              "give the base encoder's config directory with --text-config")
    encoder = AutoModel.from_config(AutoConfig.from_pretrained(base, local_files_only=True))
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    state = read_weights(path)
    load_exact(encoder, take(state, "transformer."), path, "text encoder")
    projection = take(state, "LinearTransformation.")
    if projection.get("weight") is None or projection["weight"].shape != (cfg["numDims"], cfg["transformerDimensions"]):
        raise CheckpointError(f"{path}: no LinearTransformation of {cfg['transformerDimensions']} -> {cfg['numDims']}")
    tokenizer = load_tokenizer(path, encoder.config.vocab_size)
    config = TextConfig(kind="hf", hf_config=canonical_hf_config(encoder), pooling="mean", projection="linear")
    # M-CLIP tokenizes without truncation; the encoder's position table is the real limit.
    return TextPart(config, cfg["numDims"], usable_length(tokenizer, encoder.config), layout="M-CLIP",
                    encoder=encoder, tokenizer=tokenizer, projection=projection)

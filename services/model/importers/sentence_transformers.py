"""sentence-transformers text models (``modules.json``: Transformer -> Pooling -> Dense [-> Normalize]),
such as clip-ViT-B-32-multilingual-v1, kept with their pooling and their trained Dense projection.

Reads both the v2 layout (``pooling_mode_*_tokens`` flags, ``max_seq_length`` in
``sentence_bert_config.json``) and the later one (``pooling_mode``, the length in the tokenizer).
"""

from __future__ import annotations

from pathlib import Path

from services.model.checkpoint import CheckpointError, load_hf_text_dir
from services.model.config import TextConfig
from services.model.importers.parts import TextPart, read_json, read_json_list
from services.model.importers.weights import read_weights, usable_length
from services.model.towers import canonical_hf_config

_POOLINGS = {"mean": "mean", "cls": "cls"}
_LEGACY_POOLING_FLAGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                         "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                         "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
_ACTIVATIONS = {"torch.nn.modules.linear.Identity": None, "torch.nn.modules.activation.Tanh": "tanh"}


def is_sentence_transformers(path: Path) -> bool:
    return (path / "modules.json").is_file()


def import_text(path: Path) -> TextPart:
    modules = read_json_list(path / "modules.json")
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or not set(kinds[2:]) <= {"Dense", "Normalize"} \
            or kinds.count("Dense") != 1:
        raise CheckpointError(f"{path / 'modules.json'}: modules {kinds}; supported: Transformer, Pooling, "
                              "one Dense, optionally Normalize")
    where = {kind: path / module.get("path", "") for kind, module in zip(kinds, modules, strict=True)}
    encoder, tokenizer = load_hf_text_dir(where["Transformer"])
    settings = read_json(where["Transformer"] / "sentence_bert_config.json", "sentence-transformers settings") \
        if (where["Transformer"] / "sentence_bert_config.json").is_file() else {}
    pooling = _pooling(where["Pooling"] / "config.json")
    dense = read_json(where["Dense"] / "config.json", "the Dense layer's config")
    activation = dense.get("activation_function", "torch.nn.modules.activation.Tanh")
    if activation not in _ACTIVATIONS:
        raise CheckpointError(f"{where['Dense'] / 'config.json'}: activation {activation!r} is not supported "
                              f"(supported: {sorted(_ACTIVATIONS)})")
    weights = read_weights(where["Dense"])
    projection = {k.removeprefix("linear."): v for k, v in weights.items()}
    if projection["weight"].shape != (dense["out_features"], dense["in_features"]):
        raise CheckpointError(f"{where['Dense']}: Dense weight {tuple(projection['weight'].shape)} does not match "
                              "its config")
    max_tokens = settings.get("max_seq_length") or usable_length(tokenizer, encoder.config)
    config = TextConfig(kind="hf", hf_config=canonical_hf_config(encoder), pooling=pooling,
                        projection="linear" if dense.get("bias", True) else "linear-nobias",
                        projection_activation=_ACTIVATIONS[activation],
                        clean="lowercase" if settings.get("do_lower_case") else None)
    return TextPart(config, dense["out_features"], min(max_tokens, usable_length(tokenizer, encoder.config)),
                    layout="sentence-transformers", encoder=encoder, tokenizer=tokenizer, projection=projection)


def _pooling(path: Path) -> str:
    cfg = read_json(path, "the Pooling config")
    mode = cfg.get("pooling_mode")
    if mode is None:
        modes = [name for flag, name in _LEGACY_POOLING_FLAGS.items() if cfg.get(flag)]
        mode = modes[0] if len(modes) == 1 else "+".join(modes)
    if isinstance(mode, list):
        mode = mode[0] if len(mode) == 1 else "+".join(mode)
    if mode not in _POOLINGS or not cfg.get("include_prompt", True):
        raise CheckpointError(f"{path}: pooling {mode!r} is not supported (supported: mean, cls)")
    return _POOLINGS[mode]


"""Checkpoints and pretrained weights: real files through the real loaders, and every bad file
reported as a CheckpointError that names it."""

from __future__ import annotations

import json
import shutil
import socket
import warnings
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, BertConfig, BertModel

from services.model.checkpoint import (
    CheckpointError,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from services.model.clip4clip import VideoTextModel
from services.model.config import ModelConfig, tiny
from services.model.tiny_tokenizer import build_tiny_tokenizer, tiny_vocab_size
from services.model.towers import build_openclip

TEXTS = ["a man is cooking", "부엌에서 요리하는 남자", "ㅋㅋ dog"]


def _frames(b: int, t: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 64, 64, 3), dtype=torch.uint8, generator=g)


def _model(temporal: str = "seqTransf", text_kind: str = "hf", seed: int = 0) -> VideoTextModel:
    torch.manual_seed(seed)
    return build_model(tiny(temporal=temporal, text_kind=text_kind))


@torch.inference_mode()
def _embeddings(model: VideoTextModel) -> dict[str, torch.Tensor]:
    frames = _frames(2, 4)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    return {
        "text": model.encode_text(TEXTS),
        "clips": model.encode_frames(frames, mask),
        "images": model.encode_images(frames[:, 0]),
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[VideoTextModel, Path]:
    model = _model()
    return model, save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture
def copy_of_saved(saved, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved[1], tmp_path / "copy"))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test instead of reaching a model hub."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# -- the project checkpoint ------------------------------------------------------------------------


@pytest.mark.parametrize(("temporal", "text_kind"), [("seqTransf", "hf"), ("meanP", "openclip")])
def test_round_trip_gives_identical_embeddings_and_model_id(temporal, text_kind, tmp_path, no_network):
    model = _model(temporal, text_kind)
    directory = save_checkpoint(model, tmp_path / "ckpt")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors", "tokenizer"]
    loaded = load_checkpoint(directory, device="cpu")
    assert loaded.config == model.config and not loaded.training
    assert loaded.model_id == model.model_id
    assert json.loads((directory / "config.json").read_text())["model_id"] == model.model_id
    before, after = _embeddings(model), _embeddings(loaded)
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_saving_again_replaces_the_checkpoint(tmp_path: Path) -> None:
    first, second = _model(seed=1), _model(seed=2)
    directory = save_checkpoint(first, tmp_path / "ckpt")
    save_checkpoint(second, directory)
    assert load_checkpoint(directory, device="cpu").model_id == second.model_id
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging or retired copies left


def test_refuses_to_overwrite_a_directory_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds no checkpoint"):
        save_checkpoint(_model(), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        ("config.json", "config.json"),
        ("model.safetensors", "model.safetensors"),
        ("tokenizer", "tokenizer"),
    ],
)
def test_missing_files_name_the_file(copy_of_saved: Path, remove: str, named: str) -> None:
    target = copy_of_saved / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(CheckpointError, match=named):
        load_checkpoint(copy_of_saved, device="cpu")


def test_missing_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot a checkpoint at all" * 40)


def _flip_one_weight(path: Path) -> None:
    state = load_file(str(path))
    state["visual.proj"][0, 0] += 1.0
    save_file(state, str(path))


@pytest.mark.parametrize(
    ("file", "corrupt", "expected"),
    [
        ("model.safetensors", _truncate, "safetensors"),
        ("model.safetensors", _garbage, "safetensors"),
        ("model.safetensors", _flip_one_weight, "model id"),
        ("config.json", _truncate, "JSON"),
        ("config.json", lambda p: p.write_text('{"format": "something-else"}'), "format"),
        ("config.json", lambda p: p.write_text(
            p.read_text().replace('"format_version": 1', '"format_version": 99')), "format_version"),
        ("config.json", lambda p: p.write_text(p.read_text().replace('"temporal"', '"tempo"')), "config"),
        ("tokenizer/tokenizer.json", _garbage, "tokenizer"),
    ],
)
def test_corrupt_files_name_the_file(copy_of_saved: Path, file: str, corrupt, expected: str) -> None:
    corrupt(copy_of_saved / file)
    with pytest.raises(CheckpointError, match=expected) as info:
        load_checkpoint(copy_of_saved, device="cpu")
    assert file.split("/")[0] in str(info.value)


def test_weights_of_another_architecture_are_rejected(copy_of_saved: Path, tmp_path: Path) -> None:
    config = tiny(temporal="seqTransf")
    wider = ModelConfig.from_dict({**config.to_dict(), "embed_dim": 32})
    other = save_checkpoint(build_model(wider), tmp_path / "other")
    shutil.copy(other / "model.safetensors", copy_of_saved / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*wrong shapes") as info:
        load_checkpoint(copy_of_saved, device="cpu")
    assert "(32, 64)" in str(info.value) or "(64, 32)" in str(info.value)


# -- open_clip weights files ------------------------------------------------------------------------


def _tiny_clip(seed: int, config: ModelConfig | None = None) -> open_clip.CLIP:
    torch.manual_seed(seed)
    return build_openclip(config or tiny(text_kind="openclip")).eval()


def _write_openclip(clip: open_clip.CLIP, path: Path, layout: str) -> Path:
    state = clip.state_dict()
    if layout == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif layout == "training":  # what open_clip's trainer writes: nested, DDP-prefixed
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    elif layout == "torchscript":  # the layout of OpenAI's original ViT-B-32.pt
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
            torch.jit.script(clip).save(str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("layout", "suffix"),
    [("plain", ".pt"), ("safetensors", ".safetensors"), ("training", ".bin"), ("torchscript", ".pt")],
)
@torch.inference_mode()
def test_openclip_weights_file_initialises_both_towers(layout, suffix, tmp_path, no_network) -> None:
    clip = _tiny_clip(seed=21)
    path = _write_openclip(clip, tmp_path / f"clip{suffix}", layout)
    model = build_model(tiny(text_kind="openclip"), openclip_weights=path)
    for name, tensor in clip.visual.state_dict().items():
        assert torch.equal(model.visual.state_dict()[name], tensor), name
    images = _frames(2, 1)[:, 0]
    expected_images = clip.encode_image(model._pixels(images, leading_dims=1), normalize=True)
    assert torch.allclose(model.encode_images(images), expected_images, atol=1e-5)
    # Our 32-token text tower is open_clip's 77-token one, cut short: same embedding for short text.
    tokens77 = open_clip.SimpleTokenizer(context_length=77)(["a dog runs on the beach"])
    expected_text = clip.encode_text(tokens77, normalize=True)
    assert torch.allclose(model.encode_text(["a dog runs on the beach"]), expected_text, atol=1e-5)


def test_openclip_weights_also_initialise_the_frame_encoder_of_an_hf_model(tmp_path: Path) -> None:
    clip = _tiny_clip(seed=22, config=tiny())
    path = _write_openclip(clip, tmp_path / "clip.pt", "plain")
    model = build_model(tiny(), openclip_weights=path)
    assert torch.equal(model.visual.proj, clip.visual.proj)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "absent.pt", "not found"),
        (lambda d: d / "garbage.pt", "cannot load"),
        (lambda d: d / "garbage.safetensors", "cannot load"),
        (lambda d: d / "wide.pt", "size mismatch"),
    ],
)
def test_bad_openclip_weights_files_name_the_file(tmp_path: Path, make, expected: str) -> None:
    _garbage(tmp_path / "garbage.pt")
    _garbage(tmp_path / "garbage.safetensors")
    config = tiny(text_kind="openclip")
    wide = ModelConfig.from_dict({**config.to_dict(), "embed_dim": 128})
    _write_openclip(_tiny_clip(seed=23, config=wide), tmp_path / "wide.pt", "plain")
    path = make(tmp_path)
    with pytest.raises(CheckpointError, match=expected) as info:
        build_model(config, openclip_weights=path)
    assert path.name in str(info.value)


# -- Hugging Face text encoder directories ------------------------------------------------------------


def _save_hf(directory: Path, seed: int = 31) -> BertModel:
    """A random BERT with the tiny multilingual tokenizer, saved the way users download models."""
    torch.manual_seed(seed)
    bert = BertModel(BertConfig(
        vocab_size=tiny_vocab_size(), hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=96, max_position_embeddings=40,
    ))
    bert.save_pretrained(directory)
    build_tiny_tokenizer(max_tokens=32).save_pretrained(directory)
    return bert.eval()


@torch.inference_mode()
def test_hf_directory_initialises_the_text_tower(tmp_path: Path, no_network) -> None:
    bert = _save_hf(tmp_path / "bert")
    config = ModelConfig.from_dict({**tiny().to_dict(), "text": {"kind": "hf", "pooling": "cls"}})
    model = build_model(config, hf_text_dir=tmp_path / "bert")
    assert model.config.text.hf_config["hidden_size"] == 48  # the directory's architecture is recorded
    for name, tensor in bert.state_dict().items():
        if not name.startswith("pooler."):
            assert torch.equal(model.text.encoder.state_dict()[name], tensor), name
    # The tower is the HF encoder's [CLS] state through the new projection.
    batch = model.text.tokenize([TEXTS[1]])
    hidden = bert(**batch).last_hidden_state[:, 0]
    expected = torch.nn.functional.normalize(model.text.proj(hidden), dim=-1)
    assert torch.allclose(model.encode_text([TEXTS[1]]), expected, atol=1e-5)
    # ... and a project checkpoint of it needs the original directory no more.
    directory = save_checkpoint(model, tmp_path / "ckpt")
    shutil.rmtree(tmp_path / "bert")
    loaded = load_checkpoint(directory, device="cpu")
    assert loaded.model_id == model.model_id
    assert torch.equal(loaded.encode_text(TEXTS), model.encode_text(TEXTS))


def test_hf_directory_loads_with_the_real_auto_classes(tmp_path: Path) -> None:
    _save_hf(tmp_path / "bert")
    reference = AutoModel.from_pretrained(tmp_path / "bert", local_files_only=True)
    model = build_model(tiny(), hf_text_dir=tmp_path / "bert")
    assert type(model.text.encoder) is type(reference)


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda d: shutil.rmtree(d), "bert"),
        (lambda d: (d / "config.json").unlink(), "config.json"),
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors"),
        (lambda d: _truncate(d / "model.safetensors"), "bert"),
        (lambda d: (d / "tokenizer.json").unlink() or (d / "tokenizer_config.json").unlink(), "tokenizer"),
    ],
)
def test_bad_hf_directories_name_what_is_wrong(tmp_path: Path, damage, named: str) -> None:
    _save_hf(tmp_path / "bert")
    damage(tmp_path / "bert")
    with pytest.raises(CheckpointError, match=named):
        build_model(tiny(), hf_text_dir=tmp_path / "bert")

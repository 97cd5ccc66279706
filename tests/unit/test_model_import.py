"""`vidsearch model import`: each published layout, built tiny by its reference library, imports
into a checkpoint whose embeddings match that library's on real photos and Korean/English text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from services.cli import main as cli_main
from services.media.frames import to_model_input
from services.model.checkpoint import CheckpointError, load_checkpoint
from services.model.importers import import_model
from tests.published_models import BUILDERS, SENTENCES, Published, photos

MIN_COSINE = 0.9999


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def imported(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[Published, Path]:
    root = tmp_path_factory.mktemp(request.param)
    published = BUILDERS[request.param](root / "source")
    import_model(root / "model", **published.import_kwargs)
    return published, root / "model"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@torch.inference_mode()
def test_imported_model_matches_its_reference_library(imported) -> None:
    published, directory = imported
    model = load_checkpoint(directory, device="cpu")
    images = photos()
    pixels = np.stack([to_model_input(np.asarray(i), model.image_size, crop=model.config.vision.crop)
                       for i in images])
    ours_images = model.encode_images(torch.from_numpy(pixels)).numpy()
    ours_texts = model.encode_text(list(SENTENCES)).numpy()
    assert _cosines(ours_images, published.images(images)).min() >= MIN_COSINE
    assert _cosines(ours_texts, published.texts(list(SENTENCES))).min() >= MIN_COSINE
    # The towers are not degenerate: different photos and sentences get different embeddings.
    assert _cosines(ours_images[:1], ours_images[1:]).max() < 0.999
    assert _cosines(ours_texts[:1], ours_texts[1:]).max() < 0.999


@torch.inference_mode()
def test_a_still_video_keeps_the_image_embedding_under_meanP(imported) -> None:
    _, directory = imported
    model = load_checkpoint(directory, device="cpu")
    assert model.config.temporal == "meanP"
    pixels = torch.from_numpy(np.stack([to_model_input(np.asarray(i), model.image_size) for i in photos()[:3]]))
    still = pixels.unsqueeze(1).expand(-1, model.config.num_frames, -1, -1, -1)
    assert _cosines(model.encode_frames(still).numpy(), model.encode_images(pixels).numpy()).min() >= MIN_COSINE


def test_preprocessing_and_trained_projection_are_recorded(imported) -> None:
    published, directory = imported
    document = json.loads((directory / "config.json").read_text())
    vision, text = document["config"]["vision"], document["config"]["text"]
    assert vision["resize"].startswith("shortest-center-crop") and len(vision["image_mean"]) == 3
    if text["kind"] == "hf":
        assert text["projection"] != "new-linear"  # the source's trained projection, never a new one
        model = load_checkpoint(directory, device="cpu")
        assert model.text.new_parameters() == []
    if published.name == "hf-clipmodel":
        assert vision["image_mean"] == [0.5, 0.5, 0.5] and vision["resize"] == "shortest-center-crop-floor"
        assert text["pooling"] == "eos" and text["projection"] == "linear-nobias"
    if published.name.startswith("openclip-xlmr"):
        assert text["projection"] == "mlp" and text["clean"] == "whitespace"


def test_cli_imports_and_reports_the_model_id(tmp_path: Path, capsys) -> None:
    published = BUILDERS["openclip-safetensors"](tmp_path / "source")
    args = ["model", "import", "--out", str(tmp_path / "model"), "--clip", str(published.import_kwargs["clip"]),
            "--vision-arch", published.import_kwargs["vision_arch"]]
    assert cli_main(args) == 0
    model_id = load_checkpoint(tmp_path / "model", device="cpu").model_id
    assert model_id in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give --clip PATH, or both"),
        ({"clip": "absent.bin"}, "file not found"),
        ({"vision": "vision/ViT-tiny.pt", "vision_arch": "vision/tiny-openai.json", "text": "vision"},
         "not a text model"),
        ({"clip": "vision/ViT-tiny.pt"}, "name its open_clip architecture with --vision-arch"),
        ({"clip": "xlmr/open_clip_pytorch_model.bin", "vision_arch": "xlmr/tiny-xlm-roberta.json"},
         "give its config and tokenizer directory with --text"),
        ({"clip": "vision/ViT-tiny.pt", "vision_arch": "no-such-architecture"}, "not an open_clip model name"),
    ],
)
def test_bad_sources_say_what_is_wrong(tmp_path_factory, kwargs, message) -> None:
    root = tmp_path_factory.getbasetemp() / "bad-sources"
    if not root.exists():
        BUILDERS["openai-torchscript"](root / "vision")
        BUILDERS["openclip-xlmr-bin"](root / "xlmr")
    resolved = {k: (v if k == "vision_arch" and "/" not in v else str(root / v)) for k, v in kwargs.items()}
    with pytest.raises(CheckpointError, match=message):
        import_model(root / "out", **resolved)


def test_towers_of_different_widths_are_refused(tmp_path: Path) -> None:
    from tests import published_models

    text = published_models.mclip_text(tmp_path / "mclip")
    config = json.loads((text.import_kwargs["text"] / "config.json").read_text())
    config["numDims"] = 16
    (text.import_kwargs["text"] / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="LinearTransformation"):
        import_model(tmp_path / "out", **text.import_kwargs)


def test_mclip_with_a_hub_name_as_base_takes_the_base_config_from_text_config(tmp_path: Path) -> None:
    from tests import published_models

    published = published_models.mclip_text(tmp_path / "mclip")
    config_file = published.import_kwargs["text"] / "config.json"
    config = json.loads(config_file.read_text())
    base, config["modelBase"] = config["modelBase"], "xlm-roberta-large"  # as published: a hub name
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="--text-config"):
        import_model(tmp_path / "out", **published.import_kwargs)
    import_model(tmp_path / "out", text_config=base, **published.import_kwargs)
    model = load_checkpoint(tmp_path / "out", device="cpu")
    with torch.inference_mode():
        ours = model.encode_text(list(SENTENCES)).numpy()
    assert _cosines(ours, published.texts(list(SENTENCES))).min() >= MIN_COSINE

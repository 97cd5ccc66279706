"""A CPU fast path: the frame and text towers run in ONNX Runtime, optionally with int8 weights.

Why: on CPU the eager float32 towers are the whole cost of ingest and of text queries, and
ONNX Runtime's fused kernels with dynamically quantised (int8) weights embed ViT-B/32 several
times faster (figures in docs/benchmarks.md). Like ``graphs.py`` this only replaces what runs
the towers; batching, preprocessing, the temporal aggregator and the model id stay as they are.

Each checkpoint's towers are exported once and cached under ``<cache>/<model id>/<runtime>/``
(by default ``<checkpoint>/runtimes``; a read-only checkpoint needs the ``runtime_cache``
setting). Nothing is downloaded. Before serving, `quality_gate.check` compares the fast path's
embeddings with the float32 model's on real photos, real video frames and real captions; a
runtime below the gate is refused with `RuntimeRefused`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from services.encoder import quality_gate
from services.encoder.quality_gate import RuntimeRefused
from services.model.clip4clip import VideoTextModel

log = logging.getLogger(__name__)

#: ``torch``: eager PyTorch (the reference). ``onnx``: ONNX Runtime, float32 weights.
#: ``onnx-int8``: ONNX Runtime with weights quantised to int8 (activations quantised per batch).
RUNTIMES = ("torch", "onnx", "onnx-int8")
VISUAL_FILE = "visual.onnx"
TEXT_FILE = "text.onnx"
MANIFEST_FILE = "manifest.json"
_OPSET = 17


class OnnxVisualTower(nn.Module):
    """Normalised pixels ``[n, 3, H, W]`` -> frame features ``[n, d]`` through an ONNX Runtime session."""

    def __init__(self, session) -> None:
        super().__init__()
        self.session = session

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        inputs = {"pixels": pixels.detach().to("cpu", torch.float32).contiguous().numpy()}
        return torch.from_numpy(self.session.run(None, inputs)[0])


class OnnxTextTower(nn.Module):
    """The text tower's tokenizer in Python, its transformer in an ONNX Runtime session."""

    def __init__(self, session, tower: nn.Module) -> None:
        super().__init__()
        self.session = session
        self.tokenize = tower.tokenize
        self.max_tokens = tower.max_tokens
        self._names = [i.name for i in session.get_inputs()]

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {name: tokens[name].detach().cpu().numpy().astype(np.int64) for name in self._names}
        return torch.from_numpy(self.session.run(None, inputs)[0])

    def new_parameters(self) -> list[nn.Parameter]:
        return []


class _TextExport(nn.Module):
    """The text tower with positional tensor inputs, as the exporter needs them."""

    def __init__(self, tower: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.tower, self.names = tower, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.tower(dict(zip(self.names, tensors, strict=True)))


def export_towers(model: VideoTextModel, directory: Path, quantize: bool) -> None:
    """Write ``visual.onnx`` and ``text.onnx`` (int8 weights when ``quantize``) into ``directory``."""
    import onnxruntime

    directory.mkdir(parents=True, exist_ok=True)
    size = model.image_size
    tokens = model.text.tokenize(["a person walks a dog", "two cars drive past on a wet road at night"])
    names = list(tokens)
    exports = [
        (VISUAL_FILE, model.visual, (torch.zeros(2, 3, size, size),), ["pixels"], {"pixels": {0: "batch"}}),
        (TEXT_FILE, _TextExport(model.text, names), tuple(tokens[n] for n in names), names,
         {n: {0: "batch", 1: "tokens"} for n in names}),
    ]
    for name, module, example, input_names, axes in exports:
        plain = directory / (f"float32.{name}" if quantize else name)
        # Traced with autograd on: under no_grad nn.MultiheadAttention takes its fused fast path,
        # whose operator ONNX cannot express.
        with torch.enable_grad(), warnings.catch_warnings():
            # Tracer notes on shapes taken as constants: the batch axis stays dynamic, and the gate
            # checks the result on real inputs.
            warnings.simplefilter("ignore")
            torch.onnx.export(module.float().cpu().eval(), example, str(plain), input_names=input_names,
                              output_names=["features"], dynamic_axes={**axes, "features": {0: "batch"}},
                              opset_version=_OPSET, dynamo=False)
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(plain), str(directory / name), weight_type=QuantType.QInt8)
            plain.unlink()
    manifest = {"model_id": model.model_id, "quantized": quantize, "opset": _OPSET,
                "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def runtime_directory(model_id: str, runtime: str, checkpoint: Path, cache: Path | None) -> Path:
    """Where ``runtime``'s export of ``model_id`` lives: the cache setting, else beside the checkpoint."""
    return (cache or checkpoint / "runtimes") / model_id / runtime


def _is_current(directory: Path, model_id: str) -> bool:
    manifest = directory / MANIFEST_FILE
    try:
        return json.loads(manifest.read_text()).get("model_id") == model_id
    except (OSError, ValueError):
        return False


def _cached_or_exported(model: VideoTextModel, runtime: str, directory: Path) -> Path:
    if _is_current(directory, model.model_id):
        return directory
    parent = directory.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{runtime}.", dir=parent))
    except OSError as exc:
        raise RuntimeRefused(
            f"cannot write the {runtime} export to {parent} ({exc.strerror}); set VIDSEARCH_ENCODER_RUNTIME_CACHE "
            "to a writable directory"
        ) from None
    try:
        log.info("exporting the towers of model %s for the %s runtime into %s", model.model_id, runtime, directory)
        export_towers(model, staging, quantize=runtime.endswith("int8"))
        if directory.exists() and not _is_current(directory, model.model_id):
            shutil.rmtree(directory)  # an export cut short earlier
        try:
            os.replace(staging, directory)
        except OSError:
            # Another replica sharing the cache finished first: use its export, drop ours.
            if not _is_current(directory, model.model_id):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_towers(model: VideoTextModel, directory: Path) -> tuple[OnnxVisualTower, OnnxTextTower]:
    """ONNX Runtime towers from an export directory (the text tower keeps ``model``'s tokenizer)."""
    return OnnxVisualTower(_session(directory / VISUAL_FILE)), OnnxTextTower(_session(directory / TEXT_FILE),
                                                                             model.text)


def apply_runtime(model: VideoTextModel, runtime: str, *, checkpoint: Path, cache: Path | None = None,
                  gate_media: Path | None = None) -> quality_gate.GateReport | None:
    """Runs ``model``'s towers in ``runtime`` once they pass the quality gate; returns the gate's
    report (None for ``torch``, which is the reference).

    Raises `RuntimeRefused` when the runtime cannot run here or its embeddings drift from the
    float32 model's; the message says by how much and on what.
    """
    if runtime not in RUNTIMES:
        raise RuntimeRefused(f"unknown encoder runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return None
    if model.device.type != "cpu" or model.dtype != torch.float32:
        raise RuntimeRefused(f"the {runtime} runtime is a CPU fast path; this model runs on {model.device} "
                             f"in {model.dtype}: use VIDSEARCH_ENCODER_RUNTIME=torch there")
    samples = quality_gate.load_samples(model.image_size, model.config.num_frames, gate_media)
    reference = quality_gate.embed(model, samples)
    directory = _cached_or_exported(model, runtime, runtime_directory(model.model_id, runtime, checkpoint, cache))
    visual, text = load_towers(model, directory)
    originals = model.visual, model.text
    model.with_towers(visual=visual, text=text)
    try:
        report = quality_gate.check(reference, quality_gate.embed(model, samples), runtime)
    except RuntimeRefused:
        model.with_towers(*originals)
        raise
    log.info("encoder runtime %s passed the quality gate: %s", runtime, report)
    return report

"""Importing a ViT-B/32-sized published checkpoint, and the imported model's CPU image throughput.

``python -m bench.model_import --json`` builds open_clip's ViT-B-32-quickgelu with random weights
(real size, timing only), saves it in OpenAI's TorchScript layout and as an open_clip
``open_clip_pytorch_model.bin``, times ``import_model`` on each, then measures images/s at batch
``--batch`` for the imported model (uint8 frames in) and for open_clip's own ``encode_image`` on
the same, already normalised pixels, in alternating rounds. It prints one JSON object with the
median figures and ``throughput_ratio = imported / open_clip`` (median over rounds).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import open_clip
import torch

from services.model.checkpoint import load_checkpoint
from services.model.importers import import_model


def _images_per_s(encode, pixels: torch.Tensor, seconds: float) -> float:
    with torch.inference_mode():
        encode(pixels)  # warm-up
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            encode(pixels)
            done += pixels.shape[0]
        return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=40.0, help="per model, over all rounds")
    parser.add_argument("--rounds", type=int, default=4, help="alternating measurement rounds per model")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    result: dict[str, float | int | str] = {"architecture": "ViT-B-32-quickgelu", "batch": args.batch,
                                            "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        torch.save(clip.state_dict(), root / "open_clip_pytorch_model.bin")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
            torch.jit.script(clip).save(str(root / "ViT-B-32.pt"))
        for layout, name in (("torchscript", "ViT-B-32.pt"), ("bin", "open_clip_pytorch_model.bin")):
            imported = import_model(root / f"model-{layout}", clip=root / name)
            result[f"import_s_{layout}"] = round(imported.seconds, 2)
        model = load_checkpoint(root / "model-bin", device="cpu")
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.integers(0, 256, (args.batch, 224, 224, 3), dtype=np.uint8))
    pixels = model._pixels(frames, leading_dims=1)
    # Alternating rounds, so a shared machine's changing load falls on both sides alike.
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(_images_per_s(model.encode_images, frames, args.seconds / args.rounds))
        theirs.append(_images_per_s(clip.encode_image, pixels, args.seconds / args.rounds))
    result["imported_images_per_s"] = round(float(np.median(ours)), 1)
    result["open_clip_images_per_s"] = round(float(np.median(theirs)), 1)
    result["throughput_ratio"] = round(float(np.median(np.array(ours) / np.array(theirs))), 3)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()

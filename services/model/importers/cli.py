"""``vidsearch model import``: argument parsing only; the work is in `importers.assemble`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.common.errors import VidsearchError


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``model import`` (each parser's ``run`` default returns an exit code)."""
    model = subparsers.add_parser("model", help="manage model checkpoints")
    commands = model.add_subparsers(dest="model_command", required=True)
    imp = commands.add_parser(
        "import", help="turn published CLIP weights into a vidsearch checkpoint, unchanged",
        description="Import published weights from local files: --clip for a checkpoint holding both towers "
                    "(OpenAI .pt, open_clip .bin/.safetensors, Hugging Face CLIPModel directory), or --vision with "
                    "--text (sentence-transformers or M-CLIP text models paired with their image tower).")
    imp.add_argument("--out", type=Path, required=True, help="checkpoint directory to write, e.g. models/NAME")
    imp.add_argument("--clip", type=Path, help="weights file or CLIPModel directory holding both towers")
    imp.add_argument("--vision", type=Path, help="image tower: open_clip/OpenAI weights file or CLIPModel directory")
    imp.add_argument("--text", type=Path,
                     help="text tower directory (sentence-transformers, M-CLIP, CLIPModel); with --clip of an "
                          "open_clip Hugging Face text architecture, that text model's config and tokenizer")
    imp.add_argument("--vision-arch", metavar="NAME",
                     help="open_clip architecture of a state dict (e.g. ViT-B-32-quickgelu, "
                          "xlm-roberta-base-ViT-B-32) or an open_clip model config JSON; default: inferred, "
                          "OpenAI's QuickGELU variant")
    imp.add_argument("--text-config", type=Path, metavar="DIR",
                     help="M-CLIP only: directory with the base encoder's config.json when modelBase is a hub name")
    imp.set_defaults(run=run_import)



def run_import(args: argparse.Namespace) -> int:
    from services.model.importers import import_model

    try:
        result = import_model(args.out, clip=args.clip, vision=args.vision, text=args.text,
                              vision_arch=args.vision_arch, text_config=args.text_config)
    except (VidsearchError, ValueError, OSError) as exc:
        print(f"vidsearch model import: {exc}", file=sys.stderr)
        return 2
    print(f"imported {result.vision_layout} images + {result.text_layout} text into {result.directory} "
          f"(model id {result.model_id}, {result.seconds:.1f} s)")
    return 0

"""``vidsearch train`` and ``vidsearch eval``: argument parsing only; the work is in `trainer` and `evaluate`.

Multi-GPU training: ``torchrun --nproc_per_node N -m services.cli train ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from services.common.errors import VidsearchError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``eval``; each parser's ``run`` default returns an exit code."""
    train = subparsers.add_parser("train", help="fine-tune the video-text model on a manifest (CLIP4Clip)",
                                  description="Fine-tune the video-text model on a manifest's train split.")
    train.add_argument("--manifest", type=Path, required=True, help="manifest JSONL (see services.training.manifest)")
    train.add_argument("--out", type=Path, required=True, help="output directory: checkpoints, log, final model/")
    train.add_argument("--config", choices=("tiny", "production"), default="tiny",
                       help="model preset when not starting from --init (default: tiny)")
    train.add_argument("--init", type=Path, help="start from this checkpoint directory")
    train.add_argument("--openclip-weights", type=Path, help="open_clip/OpenAI CLIP weights file for the towers")
    train.add_argument("--hf-text-dir", type=Path, help="Hugging Face text encoder directory (save_pretrained)")
    train.add_argument("--temporal", choices=("meanP", "seqTransf"),
                       help="temporal aggregation (default: the preset's, or --init's)")
    train.add_argument("--epochs", type=int, help="default: 10 (tiny), 5 (pretrained towers)")
    train.add_argument("--batch-size", type=int,
                       help="clips per optimiser step over all processes; default 16 (tiny), 128 (pretrained)")
    train.add_argument("--lr-pretrained", type=float,
                       help="learning rate of the pretrained towers; default 1e-3 (tiny), 1e-7 (pretrained)")
    train.add_argument("--lr-new", type=float,
                       help="learning rate of new layers (projection, seqTransf, temperature); "
                            "default 1e-3 (tiny), 1e-4 (pretrained)")
    train.add_argument("--weight-decay", type=float, default=0.2)
    train.add_argument("--warmup", type=float, default=0.1, help="warm-up as a fraction of all steps (default 0.1)")
    train.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    train.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping; 0 turns it off")
    train.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                       help="autocast on CUDA (auto: bf16, else fp16 with loss scaling); CPU runs fp32")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    train.add_argument("--languages", default="ko,en", help="caption languages to train on (default ko,en)")
    train.add_argument("--paraphrase", action="store_true",
                       help="synthetic corpus: caption each clip with every training template of its language")
    train.add_argument("--reverse-motion", action="store_true",
                       help="synthetic corpus: add each clip played backwards, captioned with the opposite motion "
                            "(doubles the pairs of every batch)")
    train.add_argument("--seq-motion", action="store_true",
                       help="seqTransf only: each frame's token also sees its change since the previous frame, "
                            "which tells motion directions apart")
    train.add_argument("--reversal-margin", type=float, metavar="COS",
                       help="with --reverse-motion: also push each clip and its reversed copy, and their captions, "
                            "below this cosine (breaks the order-blind start; e.g. 0.5)")
    train.add_argument("--frames-per-clip", type=int,
                       help="train on this many of each clip's frames, drawn afresh every step (default: all)")
    train.add_argument("--cache-dir", type=Path, help="frame cache directory (default <manifest dir>/.frame_cache)")
    train.add_argument("--cache-workers", type=int, help="processes sampling videos into the cache")
    train.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA if present)")
    train.add_argument("--checkpoint-every", type=int, help="optimiser steps between checkpoints (and every epoch)")
    train.add_argument("--keep-checkpoints", type=int, default=2)
    train.add_argument("--stop-after", type=int, help="checkpoint and stop after this many steps of this run")
    train.add_argument("--no-validate", action="store_true", help="skip val-split recall after each epoch")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(run=run_train)

    ev = subparsers.add_parser("eval", help="text<->video retrieval metrics of a checkpoint on a manifest split",
                               description="R@1/5/10, median and mean rank per caption language (CLIP4Clip).")
    ev.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory")
    ev.add_argument("--manifest", type=Path, required=True)
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--languages", help="comma-separated (default: every language of the split)")
    ev.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    ev.add_argument("--report", type=Path, metavar="DIR", help="write eval_report.json and recall_at_k.png here")
    ev.add_argument("--index-engine", choices=("ivf", "annoy"),
                    help="also search through an index segment of this engine, built as a shard builds one (the "
                         "shards' default is ivf)")
    ev.add_argument("--annoy", action="store_const", const="annoy", dest="index_engine",
                    help="the same as --index-engine annoy")
    ev.add_argument("--paper-table", action="store_true",
                    help="print text->video R@1/5/10 and MdR (ko, en) beside the paper's Table 2, with the recall "
                         "the index loses (implies --index-engine ivf unless another is given)")
    ev.add_argument("--motion-key", default="motion", help="attribute whose twins form the motion subset")
    ev.add_argument("--cache-dir", type=Path)
    ev.add_argument("--cache-workers", type=int)
    ev.add_argument("--batch-size", type=int, default=64, help="clips per encoder batch")
    ev.add_argument("--device")
    ev.add_argument("--runtime", default="torch", choices=("torch", "onnx", "onnx-int8"),
                    help="encoder runtime to evaluate (VIDSEARCH_ENCODER_RUNTIME; the fast ones on CPU)")
    ev.add_argument("--runtime-cache", type=Path, help="where ONNX exports go (default <checkpoint>/runtimes)")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(run=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from services.training.trainer import TrainSettings, train

    _configure_logging()
    try:
        settings = TrainSettings(
            manifest=args.manifest, out=args.out, config=args.config, init=args.init,
            openclip_weights=args.openclip_weights, hf_text_dir=args.hf_text_dir, temporal=args.temporal,
            seq_motion=args.seq_motion,
            epochs=args.epochs, batch_size=args.batch_size, lr_pretrained=args.lr_pretrained,
            lr_new=args.lr_new, weight_decay=args.weight_decay, warmup=args.warmup, grad_accum=args.grad_accum,
            max_grad_norm=args.max_grad_norm or None, precision=args.precision, seed=args.seed,
            resume=args.resume, languages=_languages(args.languages) or ("ko", "en"), paraphrase=args.paraphrase,
            reverse_motion=args.reverse_motion, reversal_margin=args.reversal_margin,
            frames_per_clip=args.frames_per_clip, cache_dir=args.cache_dir,
            cache_workers=args.cache_workers, device=args.device, checkpoint_every=args.checkpoint_every,
            keep_checkpoints=args.keep_checkpoints, stop_after=args.stop_after, validate=not args.no_validate,
            progress=not args.no_progress,
        )
        _check_positive(args, "epochs", "batch_size", "grad_accum", "checkpoint_every", "stop_after", "cache_workers",
                        "frames_per_clip")
        result = train(settings)
    except (VidsearchError, ValueError, FileNotFoundError) as exc:  # TrainingError is a VidsearchError
        print(f"vidsearch train: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if result.finished:
        print(f"final model: {result.model_dir}")
    else:
        print(f"stopped after step {result.steps}; resume with --resume (checkpoint {result.checkpoint})")
    return EXIT_OK


def run_eval(args: argparse.Namespace) -> int:
    from services.training.evaluate import EvalSettings, format_paper_table, format_table, run_evaluation

    _configure_logging()
    settings = EvalSettings(
        checkpoint=args.checkpoint, manifest=args.manifest, split=args.split,
        languages=_languages(args.languages), report_dir=args.report,
        index_engine=args.index_engine or ("ivf" if args.paper_table else None),
        motion_key=args.motion_key,
        cache_dir=args.cache_dir, cache_workers=args.cache_workers, batch_size=args.batch_size, device=args.device,
        progress=not args.no_progress, runtime=args.runtime, runtime_cache=args.runtime_cache,
    )
    try:
        _check_positive(args, "batch_size", "cache_workers")
        report = run_evaluation(settings)
    except (VidsearchError, ValueError, FileNotFoundError) as exc:
        print(f"vidsearch eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(format_paper_table(report) if args.paper_table else format_table(report))
    return EXIT_OK


def _languages(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    languages = tuple(part.strip() for part in text.split(",") if part.strip())
    return languages or None


def _check_positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value: Any = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _configure_logging() -> None:
    # Human-facing commands: plain lines on stderr, so --json output on stdout stays parseable.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)

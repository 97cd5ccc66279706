"""Text<->video retrieval evaluation of a checkpoint on a manifest split, per caption language.

Text->video: every caption of the language is a query; the gallery is every distinct clip of the
split (all languages share it); each caption has exactly one true clip. Video->text: every clip
with a caption in the language is a query; the gallery is the split's captions in that language;
a clip's rank is the best rank among its own captions (see `metrics`). Optionally the
text->video search also runs through an index segment of the engine the shards use (IVF by
default, or Annoy), built as a shard builds one, to show the recall approximate search loses, and
a "motion" subset keeps the text->video queries whose true clip has a twin differing only in motion
direction (meanP cannot separate such pairs; seqTransf can).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.model.clip4clip import VideoTextModel
from services.training import metrics
from services.training.frame_cache import ClipSpan, FrameCache, open_frame_cache

log = logging.getLogger(__name__)

REPORT_FILE = "eval_report.json"
PLOT_FILE = "recall_at_k.png"
CURVE_MAX_K = 50
#: How deep the search through an index segment goes: the deepest R@K reported.
INDEX_K = max(metrics.RECALL_KS)
DIRECTIONS = {"t2v": "Text -> Video", "v2t": "Video -> Text"}
# The paper's Table 2, text->video: R@1, R@5, R@10 (percent) and median rank per caption language.
PAPER_TABLE2 = {"ko": (29.2, 59.6, 69.9, 4.0), "en": (44.5, 71.4, 81.6, 2.0)}


@dataclass(frozen=True)
class EvalSettings:
    """``vidsearch eval``'s options."""

    checkpoint: Path
    manifest: Path
    split: str = "test"
    languages: tuple[str, ...] | None = None  # None: every language of the split
    report_dir: Path | None = None
    # Also search through an index segment of this engine (services/index/engines.py): "ivf", "annoy".
    index_engine: str | None = None
    motion_key: str = "motion"
    cache_dir: Path | None = None  # default: <manifest dir>/.frame_cache
    cache_workers: int | None = None
    batch_size: int = 64
    device: str | None = None
    progress: bool = True
    # The encoder runtime to evaluate (services/encoder/fastpath.py), e.g. "onnx-int8" against "torch".
    runtime: str = "torch"
    runtime_cache: Path | None = None  # default: <checkpoint>/runtimes


@dataclass(frozen=True)
class EvalSet:
    """The distinct clips of a split and its captions, in a fixed order."""

    clip_ids: list[str]
    rows: np.ndarray  # frame-cache row of each clip
    attributes: list[dict[str, Any]]
    captions: list[str]
    caption_clip: np.ndarray  # index into clip_ids of each caption's clip
    caption_language: np.ndarray  # str

    @classmethod
    def from_entries(cls, entries: Sequence[Any], cache: FrameCache, split: str,
                     languages: Sequence[str] | None = None) -> EvalSet:
        chosen = [e for e in entries if e.split == split and (languages is None or e.language in languages)]
        if not chosen:
            raise ValueError(f"the manifest has no {split!r} entries" +
                             (f" in languages {list(languages)}" if languages else ""))
        index: dict[ClipSpan, int] = {}
        clip_ids: list[str] = []
        rows: list[int] = []
        attributes: list[dict[str, Any]] = []
        caption_clip: list[int] = []
        for entry in chosen:
            span = ClipSpan.of(entry)
            if span not in index:
                index[span] = len(clip_ids)
                clip_ids.append(entry.clip_id)
                rows.append(cache.row(entry))
                attributes.append(dict(entry.attributes or {}))
            caption_clip.append(index[span])
        return cls(clip_ids, np.asarray(rows), attributes, [e.caption for e in chosen],
                   np.asarray(caption_clip), np.asarray([e.language for e in chosen]))

    @property
    def languages(self) -> list[str]:
        return sorted(set(self.caption_language.tolist()))


@torch.inference_mode()
def embed(model: VideoTextModel, cache: FrameCache, evalset: EvalSet, batch_size: int = 64
          ) -> tuple[np.ndarray, np.ndarray]:
    """Unit float32 embeddings of the captions ``[m, d]`` and of the clips ``[n, d]``."""
    was_training = model.training
    model.eval()
    try:
        texts = [model.encode_text(evalset.captions[i : i + 4 * batch_size]).cpu()
                 for i in range(0, len(evalset.captions), 4 * batch_size)]
        clips = []
        for i in range(0, len(evalset.rows), batch_size):
            frames, mask = cache.clip(evalset.rows[i : i + batch_size])
            clips.append(model.encode_frames(frames, mask).cpu())
    finally:
        model.train(was_training)
    return torch.cat(texts).numpy(), torch.cat(clips).numpy()


def retrieval_report(text_emb: np.ndarray, clip_emb: np.ndarray, evalset: EvalSet, *,
                     index_engine: str | None = None, motion_key: str = "motion") -> dict[str, Any]:
    """Per language: ``t2v`` and ``v2t`` summaries (``r1 r5 r10 median_rank mean_rank n`` and
    ``recall_at_k``), plus ``t2v_index`` (through a segment of ``index_engine``) and ``t2v_motion``
    when asked for and possible."""
    twins = metrics.motion_twins(evalset.attributes, motion_key)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vidsearch-eval-") as scratch:
        segment = _index_segment(index_engine, clip_emb, Path(scratch)) if index_engine else None
        for language in evalset.languages:
            out[language] = _language_report(language, text_emb, clip_emb, evalset, twins, segment)
    return out


def _language_report(language: str, text_emb: np.ndarray, clip_emb: np.ndarray, evalset: EvalSet,
                     twins: list[list[int]], segment: Any) -> dict[str, Any]:
    n_clips = len(evalset.clip_ids)
    which = np.flatnonzero(evalset.caption_language == language)
    truth = evalset.caption_clip[which]
    scores = text_emb[which] @ clip_emb.T
    t2v_rank = metrics.ranks(scores, truth, np.arange(n_clips))
    queried = np.unique(truth)  # clips with a caption in this language
    v2t_rank = metrics.ranks(clip_emb[queried] @ text_emb[which].T, queried, truth)
    result = {"t2v": _summary(t2v_rank, n_clips), "v2t": _summary(v2t_rank, len(which))}
    if segment is not None:
        result["t2v_index"] = _index_summary(segment, text_emb[which], truth, result["t2v"])
    has_twin = np.asarray([bool(twins[c]) for c in truth])
    if has_twin.any():
        motion = _summary(t2v_rank[has_twin], n_clips)
        motion["twin_accuracy"] = metrics.twin_accuracy(scores[has_twin], truth[has_twin], twins)
        result["t2v_motion"] = motion
    return result


def evaluate_model(model: VideoTextModel, entries: Sequence[Any], cache: FrameCache, *, split: str = "test",
                   languages: Sequence[str] | None = None, batch_size: int = 64, index_engine: str | None = None,
                   motion_key: str = "motion") -> dict[str, Any]:
    """The full report of ``model`` on ``split``: settings, sizes and `retrieval_report` per language."""
    evalset = EvalSet.from_entries(entries, cache, split, languages)
    text_emb, clip_emb = embed(model, cache, evalset, batch_size)
    return {
        "model_id": model.model_id,
        "temporal": model.config.temporal_label,
        "split": split,
        "n_clips": len(evalset.clip_ids),
        "n_captions": {lang: int((evalset.caption_language == lang).sum()) for lang in evalset.languages},
        "languages": retrieval_report(text_emb, clip_emb, evalset, index_engine=index_engine,
                                      motion_key=motion_key),
    }


def run_evaluation(settings: EvalSettings, entries: Sequence[Any] | None = None) -> dict[str, Any]:
    """Load the checkpoint and the manifest, evaluate, and write the report files if asked."""
    from services.model.checkpoint import load_checkpoint

    if entries is None:
        from services.training.manifest import read_manifest

        entries = read_manifest(settings.manifest)
    model = load_checkpoint(settings.checkpoint, device=settings.device)
    gate = None
    if settings.runtime != "torch":
        from services.encoder.fastpath import apply_runtime

        gate = apply_runtime(model, settings.runtime, checkpoint=settings.checkpoint, cache=settings.runtime_cache)
    cache = open_frame_cache(
        entries,
        settings.cache_dir or Path(settings.manifest).parent / ".frame_cache",
        num_frames=model.config.num_frames,
        size=model.config.vision.image_size,
        crop=model.config.vision.crop,
        workers=settings.cache_workers,
        label=str(Path(settings.manifest).resolve()),
        progress=settings.progress,
    )
    report = evaluate_model(model, entries, cache, split=settings.split, languages=settings.languages,
                            batch_size=settings.batch_size, index_engine=settings.index_engine,
                            motion_key=settings.motion_key)
    report = {"checkpoint": str(settings.checkpoint), "manifest": str(settings.manifest), **report,
              "runtime": settings.runtime}
    if gate is not None:
        report["runtime_gate"] = {"min_cosine": gate.min_cosine, **gate.per_kind}
    if settings.report_dir is not None:
        write_report(report, settings.report_dir)
    return report


# -- output ------------------------------------------------------------------------------------


def write_report(report: dict[str, Any], directory: str | Path) -> tuple[Path, Path]:
    """``eval_report.json`` and ``recall_at_k.png`` in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / REPORT_FILE
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    png_path = directory / PLOT_FILE
    plot_recall_curves(report, png_path)
    return json_path, png_path


def plot_recall_curves(report: dict[str, Any], path: Path) -> None:
    """Recall@K against K, one line per language and direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (language, result) in enumerate(report["languages"].items()):
        for direction, label in DIRECTIONS.items():  # colour: language; line style: direction
            curve = result[direction]["recall_at_k"]
            ax.plot(range(1, len(curve) + 1), [100 * r for r in curve], marker=".", color=f"C{i}",
                    linestyle="-" if direction == "t2v" else "--", label=f"{label} ({language})")
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.set_ylim(0, 103)
    ax.set_title(f"CLIP4Clip-{report['temporal']} on {report['split']} ({report['n_clips']} clips)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(report: dict[str, Any]) -> str:
    """Tables shaped like CLIP4Clip's Table 2: rows method (language), R@K in percent, MdR, MnR."""
    method = f"CLIP4Clip-{report['temporal']}"
    header = f"{'Method':<34}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'MdR':>7}{'MnR':>8}"
    lines = [f"split {report['split']}: {report['n_clips']} clips, model {report['model_id']}"]
    for direction, title in DIRECTIONS.items():
        lines += ["", title, header, "-" * len(header)]
        for language, result in report["languages"].items():
            lines.append(_row(f"{method} ({language})", result[direction]))
            if direction == "t2v" and "t2v_motion" in result:
                motion = result["t2v_motion"]
                lines.append(_row(f"  motion pairs, n={motion['n']}", motion)
                             + f"   twin acc {100 * motion['twin_accuracy']:.1f}")
            if direction == "t2v" and "t2v_index" in result:
                lines.append(_row(f"  through the index ({result['t2v_index']['engine']})", result["t2v_index"]))
    return "\n".join(lines)


def format_paper_table(report: dict[str, Any]) -> str:
    """Text->video R@1/R@5/R@10/MdR per language beside the paper's Table 2, with the recall the
    index's segment engine loses against exact search (run the evaluation with ``index_engine``)."""
    header = f"{'':<30}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'MdR':>7}"
    lines = [f"Text -> Video, split {report['split']} ({report['n_clips']} clips), model {report['model_id']} "
             f"({report['temporal']}), beside the paper's Table 2", header, "-" * len(header)]
    for language in sorted(PAPER_TABLE2, key=lambda lang: lang != "ko"):
        paper = PAPER_TABLE2[language]
        lines.append(f"{language + '  paper':<30}" + "".join(f"{v:>7.1f}" for v in paper))
        result = report["languages"].get(language)
        if result is None:
            lines.append(f"{language + '  this model':<30}  (no {language} captions in this split)")
            continue
        exact = result["t2v"]
        lines.append(f"{language + '  this model, exact':<30}" + _paper_cells(exact))
        index = result.get("t2v_index")
        if index is not None:
            lost = " / ".join(f"{100 * index['recall_lost'][f'r{k}']:.1f}" for k in metrics.RECALL_KS)
            lines.append(f"{language + '  this model, ' + index['engine']:<30}" + _paper_cells(index)
                         + f"   lost {lost} pts")
    return "\n".join(lines)


def _paper_cells(summary: dict[str, Any]) -> str:
    recalls = "".join(f"{100 * summary[f'r{k}']:>7.1f}" for k in metrics.RECALL_KS)
    median = summary.get("median_rank")
    return recalls + (f"{median:>7.1f}" if median is not None else f"{'>' + str(INDEX_K):>7}")


def _row(name: str, summary: dict[str, Any]) -> str:
    recalls = "".join(f"{100 * summary[f'r{k}']:>7.1f}" for k in metrics.RECALL_KS)
    md, mn = summary.get("median_rank"), summary.get("mean_rank")
    ranks = f"{md:>7.1f}{mn:>8.1f}" if md is not None and mn is not None else f"{'-':>7}{'-':>8}"
    return f"{name:<34}{recalls}{ranks}"


# -- pieces --------------------------------------------------------------------------------------


def _summary(rank: np.ndarray, n_candidates: int) -> dict[str, Any]:
    summary = metrics.summarise(rank)
    summary["recall_at_k"] = metrics.recall_curve(rank, min(CURVE_MAX_K, n_candidates))
    return summary


def _index_segment(engine: str, clip_emb: np.ndarray, directory: Path) -> Any:
    from services.index.engines import ENGINES

    if engine not in ENGINES:
        raise ValueError(f"no index engine {engine!r}; there are {sorted(ENGINES)}")
    # The shard's own build (its defaults: IVF lists of 256 rows, or 64 Annoy trees), with the search
    # effort calibrated for recall@10 >= 0.95 as a sealed segment's is.
    return ENGINES[engine].build(directory, "eval", [str(i) for i in range(len(clip_emb))], clip_emb)


def _index_summary(segment: Any, queries: np.ndarray, truth: np.ndarray, exact: dict[str, Any]) -> dict[str, Any]:
    ids, _ = segment.search(queries, INDEX_K)
    hit = ids == truth[:, None]
    # A truth the segment did not return in its top INDEX_K ranks beyond every K reported.
    rank = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, INDEX_K + 1)
    summary: dict[str, Any] = {f"r{k}": float(np.mean(rank <= k)) for k in metrics.RECALL_KS}
    summary["n"] = len(rank)
    summary["recall_lost"] = {f"r{k}": exact[f"r{k}"] - summary[f"r{k}"] for k in metrics.RECALL_KS}
    # Ranks past INDEX_K are unknown, so the median is known only while at most half the queries miss.
    median = float(np.median(rank))
    summary["median_rank"] = median if median <= INDEX_K else None
    summary["engine"] = segment.engine
    # The search effort used (Annoy: nodes visited; IVF: lists probed), and the structure's size.
    summary["search_k"] = segment.effective_search_k(INDEX_K)
    summary |= {"n_trees": segment.n_trees} if segment.engine == "annoy" else {"nlist": segment.nlist}
    return summary


"""``vidsearch synth``: render the bilingual synthetic corpus (films, captions, manifest).

Films are sequences of 20-second scenes with hard cuts; each scene is one clip with a Korean and
an English caption. The output directory holds ``videos/film_XXXX.mp4``, ``manifest.jsonl`` (see
`services.training.manifest`) and ``corpus.json`` (settings, seed, counts, what is held out).
Everything is a function of the settings and the seed, down to the bytes of the videos.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.clip_ids import clip_id_for
from services.training.captions import HELD_OUT_TEMPLATES, TEMPLATE_IDS, caption
from services.training.manifest import SPLITS, ManifestEntry, write_manifest
from services.training.render import render_film
from services.training.scenes import COLOURS, COUNTS, MOTIONS, PLACES, SHAPES, TIMES, Scene
from services.training.splits import PlannedClip, plan_splits

MANIFEST_FILE = "manifest.jsonl"
SUMMARY_FILE = "corpus.json"
VIDEO_DIR = "videos"
FORMAT = "vidsearch.synthetic-corpus"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CorpusSettings:
    """How much to generate and in what form; ``size`` is (width, height) in pixels."""

    n_train_clips: int
    n_val_clips: int
    n_test_clips: int
    scene_seconds: float = 20.0
    fps: int = 8
    size: tuple[int, int] = (128, 128)
    clips_per_film: int = 6

    def __post_init__(self) -> None:
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or self.fps < 1:
            raise ValueError(f"fps must be a positive integer, got {self.fps!r}")
        frames = self.scene_seconds * self.fps
        if self.scene_seconds <= 0 or abs(frames - round(frames)) > 1e-9:
            raise ValueError(f"scene_seconds * fps must be a whole number of frames, got {frames}")
        width, height = self.size
        if width < 16 or height < 16 or width % 2 or height % 2:
            raise ValueError(f"size must be even and at least 16x16 (H.264 4:2:0), got {width}x{height}")
        if self.clips_per_film < 1:
            raise ValueError(f"clips_per_film must be positive, got {self.clips_per_film}")
        object.__setattr__(self, "size", (int(width), int(height)))

    def to_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `generate_corpus`."""
        return dataclasses.asdict(self)


#: >= 500 test clips; training sized so that the whole corpus renders in a few minutes on 2 cores.
FULL = CorpusSettings(n_train_clips=2400, n_val_clips=256, n_test_clips=512)
#: For tests: five films of up to four scenes, made in seconds.
SMALL = CorpusSettings(n_train_clips=6, n_val_clips=4, n_test_clips=8, clips_per_film=4)
PRESETS = {"full": FULL, "small": SMALL}


@dataclass(frozen=True)
class Film:
    video_id: str
    split: str
    clips: tuple[PlannedClip, ...]


@dataclass(frozen=True)
class CorpusSummary:
    """What `generate_corpus` wrote."""

    out_dir: Path
    manifest: Path
    seed: int
    settings: CorpusSettings
    clips: dict[str, int]  # per split
    films: dict[str, int]  # per split
    captions: int  # manifest lines
    elapsed_s: float


def generate_corpus(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    n_train_clips: int = FULL.n_train_clips,
    n_val_clips: int = FULL.n_val_clips,
    n_test_clips: int = FULL.n_test_clips,
    scene_seconds: float = FULL.scene_seconds,
    fps: int = FULL.fps,
    size: tuple[int, int] = FULL.size,
    clips_per_film: int = FULL.clips_per_film,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CorpusSummary:
    """Render the corpus into ``out_dir``; the manifest is written last, so its presence means complete.

    ``workers`` processes render films in parallel (default: one per CPU; 1 renders in-process).
    An existing corpus in ``out_dir`` raises FileExistsError unless ``overwrite``. ``progress`` is
    called with (films done, films total) as films finish.
    """
    started = time.perf_counter()
    settings = CorpusSettings(n_train_clips, n_val_clips, n_test_clips, scene_seconds, fps, tuple(size),
                              clips_per_film)
    plan = plan_splits(seed, n_train_clips, n_val_clips, n_test_clips)
    films = _cut_into_films(plan.clips, clips_per_film)
    out = Path(out_dir).absolute()
    entries = list(_entries(films, out, settings))
    _check_unique_captions(entries)
    _prepare(out, overwrite)
    jobs = [(out / VIDEO_DIR / f"{film.video_id}.mp4", [clip.scene for clip in film.clips]) for film in films]
    _render_all(jobs, settings, workers, progress)

    counts = {
        split: {
            "clips": sum(len(f.clips) for f in films if f.split == split),
            "films": sum(f.split == split for f in films),
            "captions": sum(e.split == split for e in entries),
        }
        for split in SPLITS
    }
    summary = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "settings": settings.to_kwargs(),
        "counts": counts,
        "attributes": {"shape": SHAPES, "colour": COLOURS, "count": COUNTS, "motion": MOTIONS, "place": PLACES,
                       "time": TIMES},
        "templates": TEMPLATE_IDS,
        "held_out": {"triples": plan.held_out_triples, "templates": HELD_OUT_TEMPLATES},
        "manifest": MANIFEST_FILE,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    manifest = write_manifest(out / MANIFEST_FILE, entries)
    return CorpusSummary(
        out_dir=out,
        manifest=manifest,
        seed=seed,
        settings=settings,
        clips={split: c["clips"] for split, c in counts.items()},
        films={split: c["films"] for split, c in counts.items()},
        captions=len(entries),
        elapsed_s=time.perf_counter() - started,
    )


def _cut_into_films(clips: dict[str, list[PlannedClip]], clips_per_film: int) -> list[Film]:
    films: list[Film] = []
    for split in SPLITS:
        ordered = clips[split]
        for i in range(0, len(ordered), clips_per_film):
            films.append(Film(f"film_{len(films):04d}", split, tuple(ordered[i : i + clips_per_film])))
    return films


def _prepare(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready; only files a previous run would have written are ever removed."""
    videos = out / VIDEO_DIR
    old = [p for p in (out / MANIFEST_FILE, out / SUMMARY_FILE) if p.exists()]
    old += sorted(videos.glob("film_*.mp4*")) if videos.is_dir() else []
    if old and not overwrite:
        raise FileExistsError(f"{out} already holds a corpus ({old[0].name}, ...); pass overwrite to replace it")
    for path in old:  # the manifest goes first: a half-replaced corpus must not look complete
        path.unlink()
    videos.mkdir(parents=True, exist_ok=True)


def _render_all(
    jobs: list[tuple[Path, list[Scene]]],
    settings: CorpusSettings,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    options = {"fps": settings.fps, "size": settings.size, "scene_seconds": settings.scene_seconds}
    workers = max(1, min(workers or _usable_cpus(), len(jobs)))
    if workers == 1:
        for done, (path, scenes) in enumerate(jobs, start=1):
            render_film(path, scenes, **options)
            if progress:
                progress(done, len(jobs))
        return
    # spawn, not fork: the parent may hold threads (a decoder, torch) that fork would copy mid-lock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = {pool.submit(render_film, path, scenes, **options) for path, scenes in jobs}
        done_count = 0
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()
            done_count += len(done)
            if progress:
                progress(done_count, len(jobs))


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), not all the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _entries(films: list[Film], out: Path, settings: CorpusSettings) -> Iterator[ManifestEntry]:
    for film in films:
        video = out / VIDEO_DIR / f"{film.video_id}.mp4"
        for index, clip in enumerate(film.clips):
            start_s = index * settings.scene_seconds
            for template in clip.templates:
                yield ManifestEntry(
                    clip_id=clip_id_for(film.video_id, start_s),
                    video=video,
                    start_s=start_s,
                    end_s=start_s + settings.scene_seconds,
                    caption=caption(clip.scene.attributes, template),
                    language=template.partition("-")[0],
                    split=film.split,
                    attributes=clip.scene.attributes.to_dict(),
                    template=template,
                )


def _check_unique_captions(entries: list[ManifestEntry]) -> None:
    """An evaluation caption must name exactly one clip, or retrieval metrics are ill-defined."""
    seen: dict[tuple[str, str, str], str] = {}
    for entry in entries:
        if entry.split == "train":
            continue
        key = (entry.split, entry.language, entry.caption)
        if key in seen:
            raise RuntimeError(f"duplicate {entry.split} caption {entry.caption!r} ({seen[key]}, {entry.clip_id})")
        seen[key] = entry.clip_id


# -- command line -------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"size must look like 128x128, got {text!r}")
    return int(width), int(height)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``synth`` on a subcommand parser; `run` executes it."""
    parser = subparsers.add_parser(
        "synth",
        help="render the bilingual synthetic corpus (films, captions, manifest)",
        description="Render synthetic films with Korean and English captions into OUT/videos, "
        "OUT/manifest.jsonl and OUT/corpus.json. The same seed gives the same corpus.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full", help="size preset (default full)")
    overrides = parser.add_argument_group("overrides of the preset")
    overrides.add_argument("--train-clips", type=int, dest="n_train_clips")
    overrides.add_argument("--val-clips", type=int, dest="n_val_clips", help="even: clips come in pairs")
    overrides.add_argument("--test-clips", type=int, dest="n_test_clips", help="even: clips come in pairs")
    overrides.add_argument("--scene-seconds", type=float, dest="scene_seconds")
    overrides.add_argument("--fps", type=int)
    overrides.add_argument("--size", type=_size, help="WIDTHxHEIGHT, e.g. 128x128")
    overrides.add_argument("--clips-per-film", type=int, dest="clips_per_film")
    parser.add_argument("--workers", type=int, default=None, help="render processes (default: one per CPU)")
    parser.add_argument("--overwrite", action="store_true", help="replace a corpus already in --out")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Execute ``vidsearch synth``; returns the exit status."""
    try:
        fields = {f.name for f in dataclasses.fields(CorpusSettings)}
        chosen = {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}
        settings = dataclasses.replace(PRESETS[args.preset], **chosen)
        summary = generate_corpus(
            args.out, seed=args.seed, workers=args.workers, overwrite=args.overwrite,
            progress=_progress_printer(), **settings.to_kwargs(),
        )
    except (ValueError, FileExistsError) as exc:
        print(f"vidsearch synth: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{split} {summary.clips[split]} clips/{summary.films[split]} films" for split in SPLITS)
    print(f"wrote {summary.manifest} ({summary.captions} captions; {counts}) in {summary.elapsed_s:.1f}s")
    return 0


def _progress_printer() -> Callable[[int, int], None]:
    """Report progress on stderr in tenths, whatever the batches in which films finish."""
    printed = [-1]

    def report(done: int, total: int) -> None:
        tenth = done * 10 // total
        if tenth > printed[0]:
            printed[0] = tenth
            print(f"rendered {done}/{total} films", file=sys.stderr, flush=True)

    return report

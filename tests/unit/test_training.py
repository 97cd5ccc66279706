"""Fine-tuning: the contrastive loss, gathered-embedding DDP, the frame cache, batching, a short
real training run on generated colour videos, exact resumption and the ``train``/``eval`` CLI.

Models are tiny and run on one CPU thread: on a few shared cores, torch's intra-op threads spin
against each other and a tiny step gets ~10x slower.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from services.model.checkpoint import build_model, load_checkpoint
from services.model.config import tiny
from services.training import augment
from services.training.batches import Geometry, MicroBatch, TrainingError, TrainingSet, keep_frames, micro_batches
from services.training.cli import add_parsers
from services.training.distributed import World
from services.training.frame_cache import open_frame_cache
from services.training.loss import contrastive_loss, reversal_loss
from services.training.manifest import read_manifest
from services.training.trainer import (
    TrainSettings,
    batch_loss,
    read_log,
    train,
    warmup_cosine,
)
from tests.media import PALETTE, make_scene_cut_video, needs_ffmpeg

KOREAN = {"red": "빨간", "lime": "연두색", "blue": "파란", "yellow": "노란", "magenta": "자홍색", "cyan": "청록색",
          "white": "하얀", "orange": "주황색"}
#: tiny() with 4 frames per clip instead of 12: the same architecture, a third of the work.
TINY = dataclasses.replace(tiny(), num_frames=4)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _manifest_line(video: str, index: int, colour: str, language: str, split: str, *, seconds: float = 1.0,
                   start: float | None = None) -> str:
    start = index * seconds if start is None else start
    caption = f"a {colour} screen" if language == "en" else f"{KOREAN[colour]} 화면"
    return json.dumps({
        "clip_id": f"{Path(video).stem}:{round(start * 1000):09d}", "video": video, "start_s": start,
        "end_s": start + seconds, "caption": caption, "language": language, "split": split,
        "attributes": {"colour": colour}, "template": None,
    }, ensure_ascii=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three films of 8 one-second solid-colour scenes (train, val, test: each its own order),
    every scene captioned with its colour in English and Korean."""
    root = tmp_path_factory.mktemp("corpus")
    lines = []
    for shift, split in enumerate(("train", "val", "test")):
        colours = PALETTE[3 * shift :] + PALETTE[: 3 * shift]
        make_scene_cut_video(root / f"{split}.mp4", [(c, 1.0) for c in colours], fps=8, size=(64, 64))
        lines += [_manifest_line(f"{split}.mp4", i, c, lang, split)
                  for i, c in enumerate(colours) for lang in ("en", "ko")]
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "manifest.jsonl"


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vidsearch")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


# -- the loss -------------------------------------------------------------------------------------


def _reference_loss(text: torch.Tensor, video: torch.Tensor, scale: float, clip_ids: list[int] | None = None) -> float:
    """Symmetric InfoNCE with explicit loops in float64; pairs of the same clip leave the denominators."""
    t, v = text.double().tolist(), video.double().tolist()
    n = len(t)
    ids = clip_ids or list(range(n))
    logit = [[scale * sum(a * b for a, b in zip(t[i], v[j], strict=True)) for j in range(n)] for i in range(n)]

    def kept(i: int, j: int) -> bool:
        return i == j or ids[i] != ids[j]

    t2v = sum(-(logit[i][i] - math.log(sum(math.exp(logit[i][j]) for j in range(n) if kept(i, j))))
              for i in range(n)) / n
    v2t = sum(-(logit[j][j] - math.log(sum(math.exp(logit[i][j]) for i in range(n) if kept(i, j))))
              for j in range(n)) / n
    return (t2v + v2t) / 2


def _unit_rows(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)


def test_loss_matches_reference_computation() -> None:
    text, video = _unit_rows(6, 16, 0), _unit_rows(6, 16, 1)
    logit_scale = torch.tensor(math.log(1 / 0.07))
    loss = contrastive_loss(text, video, logit_scale)
    assert loss.item() == pytest.approx(_reference_loss(text, video, 1 / 0.07), rel=1e-5)
    # Matching pairs give a lower loss than mismatched ones.
    assert contrastive_loss(video, video, logit_scale) < loss


def test_loss_drops_duplicate_clips_from_the_denominators() -> None:
    text, video = _unit_rows(5, 8, 2), _unit_rows(5, 8, 3)
    ids = [0, 1, 0, 2, 1]  # rows 0 and 2 are one clip, rows 1 and 4 another
    scale = torch.tensor(math.log(20.0))
    loss = contrastive_loss(text, video, scale, torch.tensor(ids))
    assert loss.item() == pytest.approx(_reference_loss(text, video, 20.0, ids), rel=1e-5)
    assert loss.item() != pytest.approx(_reference_loss(text, video, 20.0), rel=1e-3)


def test_reversal_loss_is_a_hinge_on_each_twins_distance() -> None:
    base, other = _unit_rows(3, 8, 6), _unit_rows(3, 8, 7)
    # Twins that embed alike cost the whole chord of the margin's cosine: sqrt(2 - 2 * 0.5) = 1.
    rows = torch.cat([base, base])
    assert reversal_loss(rows, rows, 3, margin=0.5).item() == pytest.approx(1.0, abs=1e-5)
    # Twins below the margin's cosine cost nothing; the cost is the mean shortfall over both towers.
    text, video = torch.cat([base, other]), torch.cat([base, base])
    distance = (base - other).norm(dim=-1)
    chord = math.sqrt(2 - 2 * 0.2)
    expected = (chord + torch.clamp(chord - distance, min=0).mean().item()) / 2
    assert reversal_loss(text, video, 3, margin=0.2).item() == pytest.approx(expected, abs=1e-5)
    # However close the twins are, the gradient pushes them apart at full strength; equal twins
    # (a still shot) get a zero gradient, not NaN.
    near = torch.cat([base, torch.nn.functional.normalize(base + 1e-4 * other, dim=-1)]).requires_grad_()
    reversal_loss(near, near, 3, margin=0.0).backward()
    push = (near.grad[:3] * (near[3:] - near[:3]).detach()).sum(-1) / (near[3:] - near[:3]).detach().norm(dim=-1)
    assert bool((push > 0.05).all())
    equal = rows.clone().requires_grad_()
    reversal_loss(equal, equal, 3, margin=0.0).backward()
    assert torch.isfinite(equal.grad).all()
    with pytest.raises(ValueError, match="paired rows"):
        reversal_loss(base, base, 3, margin=0.5)


def test_temperature_is_clamped_at_100_like_clip() -> None:
    text, video = _unit_rows(4, 8, 4), _unit_rows(4, 8, 5)
    above = torch.tensor(math.log(1000.0), requires_grad=True)
    loss = contrastive_loss(text, video, above)
    loss.backward()
    assert loss.item() == pytest.approx(_reference_loss(text, video, 100.0), rel=1e-5)
    assert above.grad.item() == 0.0
    below = torch.tensor(math.log(20.0), requires_grad=True)
    contrastive_loss(text, video, below).backward()
    assert below.grad.item() != 0.0


# -- DDP: gathered embeddings give the single-process gradient of the global batch -------------------

DDP_CONFIG = dataclasses.replace(tiny(), num_frames=2)


def _ddp_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(DDP_CONFIG).eval()  # eval: no dropout, so both runs draw nothing at random


def _ddp_batch() -> MicroBatch:
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (4, 2, 64, 64, 3), dtype=torch.uint8, generator=g)
    mask = torch.tensor([[True, True], [True, False], [True, True], [True, True]])
    texts = ["a red square", "파란 원이 움직인다", "two dogs on the beach", "노란 별"]
    return MicroBatch(texts, frames, mask, torch.arange(4))


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        model = _ddp_model()
        full = _ddp_batch()
        part = slice(rank * 2, rank * 2 + 2)
        local = MicroBatch(full.texts[part], full.frames[part], full.mask[part], full.clip_ids[part])
        ddp = DistributedDataParallel(model)  # kept alive: its reducer all-reduces during backward
        loss = batch_loss(ddp, local, World(rank=rank, size=world_size))
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        torch.save({"loss": loss.item(), "grads": grads}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_with_two_processes_gives_the_full_batch_gradient(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    model = _ddp_model()
    loss = batch_loss(model, _ddp_batch(), World())
    loss.backward()
    expected = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert len(expected) == len(list(model.parameters()))
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["loss"] == pytest.approx(loss.item(), rel=1e-5)  # every rank saw the global batch
        assert result["grads"].keys() == expected.keys()
        for name, grad in expected.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


# -- the frame cache -------------------------------------------------------------------------------


@needs_ffmpeg
def test_frame_cache_is_reused_until_its_clips_change(tmp_path: Path) -> None:
    make_scene_cut_video(tmp_path / "a.mp4", [("red", 1.0), ("blue", 1.0)], fps=8, size=(64, 48))
    make_scene_cut_video(tmp_path / "b.mp4", [("lime", 1.0), ("white", 1.0)], fps=8, size=(64, 48))
    manifest = tmp_path / "manifest.jsonl"

    def cache_for(lines: list[str], **kwargs):
        manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
        settings = {"num_frames": 4, "size": 32, "workers": 1, "label": str(manifest), **kwargs}
        return open_frame_cache(read_manifest(manifest), tmp_path / "cache", **settings)

    def colour(cache, line: str) -> np.ndarray:
        entry = _entry_of(manifest, line)
        return cache.frames[cache.row(entry)].reshape(-1, 3).mean(axis=0)

    first = [_manifest_line("a.mp4", 0, "red", "en", "train"), _manifest_line("a.mp4", 1, "blue", "en", "train")]
    built = cache_for(first)
    assert not built.reused and built.frames.shape == (2, 4, 32, 32, 3) and built.mask.all()
    assert np.allclose(colour(built, first[0]), [255, 0, 0], atol=12)
    assert np.allclose(colour(built, first[1]), [0, 0, 255], atol=12)
    index_mtime = (built.directory / "index.json").stat().st_mtime_ns

    again = cache_for(first)
    assert again.reused and again.directory == built.directory
    assert (again.directory / "index.json").stat().st_mtime_ns == index_mtime
    # Another caption of the same clip changes no pixel: still the same cache.
    assert cache_for([*first, _manifest_line("a.mp4", 0, "red", "ko", "train")]).reused

    # A changed range and a new video: a new cache (two videos, sampled by two processes), and
    # the old one of this manifest is removed.
    changed = [_manifest_line("a.mp4", 0, "red", "en", "train", start=0.5),
               _manifest_line("b.mp4", 1, "white", "en", "train")]
    rebuilt = cache_for(changed, workers=2)
    assert not rebuilt.reused and rebuilt.directory != built.directory
    assert not built.directory.exists()
    red_then_blue = rebuilt.frames[rebuilt.row(_entry_of(manifest, changed[0]))]
    assert np.allclose(red_then_blue[0].reshape(-1, 3).mean(0), [255, 0, 0], atol=12)
    assert np.allclose(red_then_blue[-1].reshape(-1, 3).mean(0), [0, 0, 255], atol=12)
    assert np.allclose(colour(rebuilt, changed[1]), [255, 255, 255], atol=12)
    # Other sampling settings: another cache, and this one stays.
    other = cache_for(changed, num_frames=2)
    assert not other.reused and other.frames.shape[1] == 2 and rebuilt.directory.exists()


def _entry_of(manifest: Path, line: str):
    """The entry of one manifest line, resolved against ``manifest``'s directory."""
    single = manifest.with_name("one.jsonl")
    single.write_text(line + "\n", encoding="utf-8")
    return read_manifest(single)[0]


# -- batching and schedule ---------------------------------------------------------------------------


def test_each_clip_once_per_epoch_with_one_of_its_captions() -> None:
    trainset = TrainingSet(np.arange(6), [(f"c{i} en", f"c{i} ko") for i in range(6)])
    order, captions = trainset.epoch_plan(seed=3, epoch=0)
    assert sorted(order.tolist()) == list(range(6))  # no clip twice, so the diagonal is the only positive
    assert all(caption.startswith(f"c{clip} ") for clip, caption in zip(order, captions, strict=True))
    again = trainset.epoch_plan(seed=3, epoch=0)
    assert np.array_equal(again[0], order) and again[1] == captions
    drawn = {c for epoch in range(8) for c in trainset.epoch_plan(seed=3, epoch=epoch)[1]}
    assert len(drawn) == 12  # over epochs, every caption is used


class _RowCache:
    """A frame cache stand-in: clip ``r`` is frames whose pixels all equal the frame's index + 10 r."""

    def __init__(self, entries, steps: int = 6) -> None:
        self.rows = {clip_id: i for i, clip_id in enumerate(dict.fromkeys(e.clip_id for e in entries))}
        self.steps = steps

    def row(self, entry) -> int:
        return self.rows[entry.clip_id]

    def clip(self, rows):
        rows = np.asarray(rows)
        values = (np.arange(self.steps)[None, :] + 10 * rows[:, None]).astype(np.uint8)
        frames = np.broadcast_to(values[..., None, None, None], (len(rows), self.steps, 2, 2, 3)).copy()
        return frames, np.ones((len(rows), self.steps), bool)


def _synthetic_entries():
    from services.training.manifest import ManifestEntry

    scenes = [("circle", "red", 1, "left", "sea", "day"), ("star", "blue", 2, "up", "city", "night")]
    entries = []
    for i, (shape, colour, count, motion, place, time) in enumerate(scenes):
        attributes = {"shape": shape, "colour": colour, "count": count, "motion": motion, "place": place,
                      "time": time}
        for template in ("ko-1", "en-0"):
            from services.training.captions import caption
            from services.training.scenes import Attributes

            entries.append(ManifestEntry(
                clip_id=f"film_0000:{i:09d}", video=Path("/nonexistent.mp4"), start_s=float(i), end_s=i + 1.0,
                caption=caption(Attributes(**attributes), template), language=template[:2], split="train",
                attributes=attributes, template=template))
    return entries


def test_paraphrases_use_every_training_template_and_never_a_held_out_one() -> None:
    from services.training.captions import HELD_OUT_TEMPLATES, TRAIN_TEMPLATES, caption
    from services.training.scenes import Attributes

    entries = _synthetic_entries()
    trainset = TrainingSet.from_entries(entries, _RowCache(entries), ("ko", "en"), paraphrase=True)
    first = Attributes(**entries[0].attributes)
    expected = {caption(first, t) for ids in TRAIN_TEMPLATES.values() for t in ids}
    assert set(trainset.captions[0]) == expected
    held_out = {caption(first, t) for ids in HELD_OUT_TEMPLATES.values() for t in ids}
    assert held_out.isdisjoint(trainset.captions[0])
    plain = TrainingSet.from_entries(entries, _RowCache(entries), ("ko", "en"))
    assert set(plain.captions[0]) == {e.caption for e in entries[:2]}


def test_reversed_clips_play_backwards_with_the_opposite_motion_in_the_same_batch() -> None:
    entries = _synthetic_entries()
    cache = _RowCache(entries)
    trainset = TrainingSet.from_entries(entries, cache, ("ko", "en"), reverse=True)
    geometry = Geometry.plan(len(trainset), batch_size=2, grad_accum=1, world_size=1)
    (batch,) = next(micro_batches(trainset, cache, geometry, World(), seed=0, epoch=0,
                                  first_step=0, pin=False))
    assert len(batch.texts) == batch.frames.shape[0] == 4 and batch.clip_ids.tolist()[2:] == \
        [i + 2 for i in batch.clip_ids.tolist()[:2]]
    assert torch.equal(batch.frames[2:], batch.frames[:2].flip(1)) and batch.reversed_from == 2
    for forward, backward in zip(batch.texts[:2], batch.texts[2:], strict=True):
        assert forward != backward
        words = {"왼쪽": "오른쪽", "위쪽": "아래쪽", "left": "right", "up": "down"}
        swapped = forward
        for a, b in words.items():
            swapped = swapped.replace(a, "\0").replace(b, a).replace("\0", b)
        assert swapped == backward


def test_augmentations_refuse_a_manifest_without_synthetic_templates(corpus: Path) -> None:
    entries = read_manifest(corpus)
    with pytest.raises(TrainingError, match="synthetic training template"):
        TrainingSet.from_entries(entries, _RowCache(entries), ("ko", "en"), paraphrase=True)


def test_frames_per_clip_keeps_that_many_valid_frames_in_place() -> None:
    mask = np.ones((3, 12), bool)
    mask[2, 4:] = False
    kept = keep_frames(mask, 6, np.random.default_rng(0).random(mask.shape))
    assert kept.sum(axis=1).tolist() == [6, 6, 4]
    assert not (kept & ~mask).any()


def test_batch_geometry() -> None:
    geometry = Geometry.plan(n_clips=100, batch_size=32, grad_accum=2, world_size=4)
    assert (geometry.micro, geometry.per_rank, geometry.steps_per_epoch) == (16, 4, 3)
    with pytest.raises(TrainingError, match="multiple of grad_accum"):
        Geometry.plan(n_clips=100, batch_size=30, grad_accum=4, world_size=1)
    assert Geometry.plan(n_clips=10, batch_size=16, grad_accum=1, world_size=4).batch_size == 8


def test_learning_rate_warms_up_linearly_then_decays_by_cosine() -> None:
    factor = warmup_cosine(total_steps=110, warmup_steps=10)
    assert [factor(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert factor(60) == pytest.approx(0.5)
    assert factor(109) < 0.01


# -- training end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
@needs_ffmpeg
def test_training_raises_text_to_video_recall_well_above_chance(corpus: Path, tmp_path: Path, capsys) -> None:
    result = train(TrainSettings(manifest=corpus, out=tmp_path / "run", model_config=TINY, epochs=40,
                                 batch_size=8, progress=False, cache_workers=1))
    assert result.finished and result.steps == 40
    log = read_log(tmp_path / "run")
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 41))
    assert sum(1 for r in log if "val_t2v" in r) == 40
    assert load_checkpoint(result.model_dir, device="cpu").model_id  # the encoder service can load it

    report_dir = tmp_path / "report"
    argv = ["eval", "--checkpoint", str(result.model_dir), "--manifest", str(corpus), "--json", "--annoy",
            "--report", str(report_dir), "--no-progress"]
    assert _cli(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "test" and report["n_clips"] == 8
    chance = 1 / 8
    recall = [report["languages"][lang]["t2v"]["r1"] for lang in ("en", "ko")]
    assert np.mean(recall) >= 4 * chance, recall  # unseen clips of the trained colours
    assert (report_dir / "eval_report.json").is_file() and (report_dir / "recall_at_k.png").is_file()
    assert {report["languages"][lang]["t2v_index"]["engine"] for lang in ("en", "ko")} == {"annoy"}


@needs_ffmpeg
def test_resume_continues_exactly_where_the_run_stopped(corpus: Path, tmp_path: Path) -> None:
    # 8 clips in steps of 4: 2 steps an epoch, 6 in all; the stop falls mid-epoch. Dropout is on,
    # so the RNG state must come back too.
    common = {"manifest": corpus, "model_config": TINY, "epochs": 3, "batch_size": 4, "seed": 7,
              "progress": False, "validate": False, "cache_workers": 1}
    whole = train(TrainSettings(out=tmp_path / "whole", **common))
    stopped = train(TrainSettings(out=tmp_path / "resumed", stop_after=3, **common))
    assert not stopped.finished and stopped.steps == 3 and stopped.model_dir is None
    resumed = train(TrainSettings(out=tmp_path / "resumed", resume=True, **common))
    assert resumed.finished and resumed.steps == 6
    assert [r["loss"] for r in read_log(tmp_path / "resumed")] == [r["loss"] for r in read_log(tmp_path / "whole")]
    assert load_checkpoint(resumed.model_dir).model_id == load_checkpoint(whole.model_dir).model_id


@needs_ffmpeg
def test_train_cli_stops_refuses_to_overwrite_and_resumes(corpus: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    argv = ["train", "--manifest", str(corpus), "--out", str(out), "--config", "tiny", "--temporal", "seqTransf",
            "--epochs", "2", "--batch-size", "8", "--no-progress", "--no-validate", "--cache-workers", "1"]
    assert _cli([*argv, "--stop-after", "1"]) == 0
    assert "resume with --resume" in capsys.readouterr().out
    assert _cli(argv) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert _cli([*argv, "--resume"]) == 0
    model = load_checkpoint(out / "model", device="cpu")
    assert (model.config.temporal, model.config.num_frames) == ("seqTransf", 12)
    assert [r["step"] for r in read_log(out)] == [1, 2]


def _twin_cosines(model_dir: Path, manifest: Path) -> tuple[float, float]:
    """Over the training clips: mean cos(clip, clip played backwards) and mean cos(caption,
    caption with the motion reversed)."""
    every = read_manifest(manifest)
    entries = [e for e in every if e.split == "train"]
    model = load_checkpoint(model_dir, device="cpu").eval()
    cache = open_frame_cache(every, manifest.parent / ".frame_cache", num_frames=model.config.num_frames,
                             size=model.config.vision.image_size, label=str(manifest.resolve()), workers=1)
    frames, mask = cache.clip(np.array([cache.row(e) for e in entries]))
    reversed_captions = [augment.captions_of(e, (e.template,), reverse=True)[0] for e in entries]
    with torch.inference_mode():
        clip = model.encode_frames(frames, mask)
        backwards = model.encode_frames(np.ascontiguousarray(frames[:, ::-1]), np.ascontiguousarray(mask[:, ::-1]))
        text, text_backwards = model.encode_text([e.caption for e in entries]), model.encode_text(reversed_captions)
    return float((clip * backwards).sum(1).mean()), float((text * text_backwards).sum(1).mean())


@pytest.mark.slow
@needs_ffmpeg
def test_motion_tokens_and_the_reversal_hinge_teach_motion_direction(tmp_path: Path) -> None:
    from services.training import synth

    out = tmp_path / "corpus"
    synth.generate_corpus(out, seed=3, n_train_clips=8, n_val_clips=4, n_test_clips=4, clips_per_film=4,
                          scene_seconds=4.0, size=(64, 64), workers=1)
    manifest = out / "manifest.jsonl"
    common = {"manifest": manifest, "epochs": 100, "batch_size": 8, "lr_pretrained": 3e-3, "lr_new": 1e-2,
              "weight_decay": 0.05, "reverse_motion": True, "progress": False, "validate": False,
              "cache_workers": 1, "model_config": dataclasses.replace(TINY, temporal="seqTransf")}
    plain = train(TrainSettings(out=tmp_path / "plain", **common))
    motion = train(TrainSettings(out=tmp_path / "motion", seq_motion=True, reversal_margin=0.5, **common))
    plain_clips, plain_captions = _twin_cosines(plain.model_dir, manifest)
    motion_clips, motion_captions = _twin_cosines(motion.model_dir, manifest)
    assert load_checkpoint(motion.model_dir).config.seq_motion
    # CLIP4Clip's seqTransf stays all but order-blind, and so does the text tower it trains with;
    # with motion tokens and the hinge, both towers tell the twins apart (alignment of the two
    # takes the full corpus: see models/default/README.md).
    assert plain_clips > 0.99 and motion_clips < 0.9, (plain_clips, motion_clips)
    assert motion_captions < 0.9 and motion_captions < plain_captions - 0.05, (plain_captions, motion_captions)


def test_reversal_margin_needs_reversed_clips(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="reverse_motion"):
        train(TrainSettings(manifest=tmp_path / "m.jsonl", out=tmp_path / "run", reversal_margin=0.5))


@needs_ffmpeg
def test_an_imported_published_model_fine_tunes_with_seqtransf_and_reloads(corpus: Path, tmp_path: Path,
                                                                           capsys) -> None:
    from services.model.importers import import_model
    from tests.published_models import BUILDERS

    published = BUILDERS["openclip-xlmr-bin"](tmp_path / "source")
    import_model(tmp_path / "imported", **published.import_kwargs)
    imported = load_checkpoint(tmp_path / "imported", device="cpu")
    out = tmp_path / "run"
    argv = ["train", "--init", str(tmp_path / "imported"), "--temporal", "seqTransf", "--manifest", str(corpus),
            "--out", str(out), "--epochs", "30", "--batch-size", "8", "--lr-pretrained", "1e-3", "--lr-new", "1e-3",
            "--no-progress", "--no-validate", "--cache-workers", "1"]
    assert _cli(argv) == 0
    losses = [r["loss"] for r in read_log(out) if "loss" in r]
    assert len(losses) == 30 and np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses
    model = load_checkpoint(out / "model", device="cpu")
    assert model.config.temporal == "seqTransf"
    assert model.config.text == imported.config.text and model.config.vision == imported.config.vision
    # The trained projection was fine-tuned as a pretrained layer, not replaced by a new one.
    groups = {g["name"]: {id(p) for p in g["params"]} for g in model.param_groups(1e-7, 1e-4)}
    assert {id(p) for p in model.text.proj.parameters()} <= groups["pretrained"]
    assert not torch.equal(model.text.proj[0].weight, imported.text.proj[0].weight)

    # The paper's table, for the zero-shot import and the fine-tuned model alike.
    for checkpoint in (tmp_path / "imported", out / "model"):
        capsys.readouterr()
        assert _cli(["eval", "--checkpoint", str(checkpoint), "--manifest", str(corpus), "--paper-table",
                     "--no-progress", "--cache-workers", "1"]) == 0
        table = capsys.readouterr().out.splitlines()
        assert [line.split()[1:] for line in table if "paper" in line.split()[:2]] == [
            ["paper", "29.2", "59.6", "69.9", "4.0"], ["paper", "44.5", "71.4", "81.6", "2.0"]]
        assert [line.split()[0] for line in table if "exact" in line] == ["ko", "en"]
        assert sum("this model, ivf" in line and "lost" in line for line in table) == 2


def test_paper_table_says_when_a_language_has_no_captions() -> None:
    from services.training.evaluate import format_paper_table

    summary = {"r1": 0.5, "r5": 0.75, "r10": 1.0, "median_rank": 1.5, "mean_rank": 2.0, "n": 4}
    index = {**summary, "r1": 0.25, "recall_lost": {"r1": 0.25, "r5": 0.0, "r10": 0.0}, "engine": "ivf"}
    report = {"split": "test", "n_clips": 4, "model_id": "abc", "temporal": "meanP",
              "languages": {"en": {"t2v": summary, "t2v_index": index}}}
    table = format_paper_table(report)
    assert "no ko captions in this split" in table
    rows = {" ".join(line.split()[:4]): line.split()[4:] for line in table.splitlines()}
    assert rows["en this model, exact"] == ["50.0", "75.0", "100.0", "1.5"]
    assert " ".join(rows["en this model, ivf"]) == "25.0 75.0 100.0 1.5 lost 25.0 / 0.0 / 0.0 pts"

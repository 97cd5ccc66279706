"""The synthetic corpus: captions, splits, the manifest, and the rendered films decoded for real.

One SMALL corpus is rendered per module (about a second) and read back with the project's
FrameSampler, so the checks see what the trainer will see.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from services.media.frames import FrameSampler
from services.training import synth
from services.training.captions import (
    HELD_OUT_TEMPLATES,
    MAX_KO_CHARS,
    SURFACE_FORMS,
    TEMPLATE_IDS,
    TRAIN_TEMPLATES,
    caption,
    particle,
)
from services.training.manifest import ManifestEntry, read_manifest
from services.training.scenes import AXES, COLOURS, COUNTS, MOTIONS, PLACES, SHAPES, TIMES, Attributes
from services.training.splits import plan_splits

ALL_ATTRIBUTES = [Attributes(*combo) for combo in itertools.product(SHAPES, COLOURS, COUNTS, MOTIONS, PLACES, TIMES)]
OPPOSITE = {a: b for a, b in AXES.values()} | {b: a for a, b in AXES.values()}


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="vidsearch")
    synth.add_parser(parser.add_subparsers(dest="command", required=True))
    return synth.run(parser.parse_args(["synth", *argv]))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    assert cli("--out", str(out), "--preset", "small", "--seed", "7", "--workers", "1") == 0
    return out


@pytest.fixture(scope="module")
def entries(corpus: Path) -> list[ManifestEntry]:
    return read_manifest(corpus / "manifest.jsonl")


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def clips_of(entries: list[ManifestEntry], language: str = "en") -> list[ManifestEntry]:
    return [e for e in entries if e.language == language]


# -- captions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "pair", "expected"),
    [
        ("공", "이/가", "공이"),
        ("네모", "이/가", "네모가"),
        ("두 개", "이/가", "두 개가"),
        ("숲", "을/를", "숲을"),
        ("바다", "을/를", "바다를"),
        ("오른쪽", "으로/로", "오른쪽으로"),
        ("위", "으로/로", "위로"),
        ("별", "으로/로", "별로"),  # ㄹ takes 로
    ],
)
def test_korean_particles_follow_the_final_consonant(word: str, pair: str, expected: str) -> None:
    assert particle(word, pair) == expected


def test_every_language_has_four_training_templates_and_held_out_ones() -> None:
    for language in ("ko", "en"):
        assert len(TRAIN_TEMPLATES[language]) >= 4
        assert HELD_OUT_TEMPLATES[language]
        assert set(TRAIN_TEMPLATES[language]).isdisjoint(HELD_OUT_TEMPLATES[language])


def test_caption_lengths_for_every_scene_and_template() -> None:
    longest = {
        language: max(len(caption(a, t)) for a in ALL_ATTRIBUTES for t in TEMPLATE_IDS[language])
        for language in ("ko", "en")
    }
    assert longest["ko"] <= MAX_KO_CHARS
    assert longest["en"] <= 80


def _mentions(text: str, language: str, forms: tuple[str, ...]) -> bool:
    if language == "ko":
        return any(form in text for form in forms)
    return any(re.search(rf"\b{re.escape(form)}\b", text) for form in forms)


@pytest.mark.parametrize("template", [*TEMPLATE_IDS["ko"], *TEMPLATE_IDS["en"]])
def test_caption_names_each_attribute_value_and_no_other(template: str) -> None:
    language = template.partition("-")[0]
    texts = {}
    for a in ALL_ATTRIBUTES:
        text = caption(a, template)
        for name, values in SURFACE_FORMS[language].items():
            for value, forms in values.items():
                assert _mentions(text, language, forms) == (value == getattr(a, name)), (text, name, value)
        texts[text] = a
    assert len(texts) == len(ALL_ATTRIBUTES)  # a template never gives two scenes one caption


def test_unknown_template_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown caption template"):
        caption(ALL_ATTRIBUTES[0], "ko-99")


# -- splits (the FULL plan, without rendering) ------------------------------------------------------------


@pytest.fixture(scope="module")
def full_plan():
    return plan_splits(0, synth.FULL.n_train_clips, synth.FULL.n_val_clips, synth.FULL.n_test_clips)


def test_full_plan_has_500_test_clips_with_unique_captions(full_plan) -> None:
    test = full_plan.clips["test"]
    assert len(test) >= 500
    assert len({c.scene.attributes for c in test}) == len(test)
    for i in range(len(TEMPLATE_IDS)):  # one template per language
        captions = [caption(c.scene.attributes, c.templates[i]) for c in test]
        assert len(set(captions)) == len(captions)


def test_test_clips_come_in_pairs_that_differ_only_in_direction(full_plan) -> None:
    for split in ("val", "test"):
        by_attributes = {c.scene.attributes: c for c in full_plan.clips[split]}
        motions = Counter()
        for a, clip in by_attributes.items():
            partner = by_attributes[a.with_motion(OPPOSITE[a.motion])]
            assert partner.scene.look_seed == clip.scene.look_seed
            assert partner.templates == clip.templates
            motions[a.motion] += 1
        assert motions["left"] == motions["right"] > 0 and motions["up"] == motions["down"] > 0


def test_held_out_combinations_and_templates_never_reach_training(full_plan) -> None:
    train = full_plan.clips["train"]
    train_attributes = {c.scene.attributes for c in train}
    train_triples = {a.triple for a in train_attributes}
    for split in ("val", "test"):
        held_out = set(full_plan.held_out_triples[split])
        assert held_out and held_out.isdisjoint(train_triples)
        eval_attributes = {c.scene.attributes for c in full_plan.clips[split]}
        assert eval_attributes.isdisjoint(train_attributes)
        assert held_out <= {a.triple for a in eval_attributes}
    assert set(full_plan.held_out_triples["val"]).isdisjoint(full_plan.held_out_triples["test"])
    train_templates = {t for c in train for t in c.templates}
    assert train_templates.isdisjoint({t for ids in HELD_OUT_TEMPLATES.values() for t in ids})
    eval_templates = {t for split in ("val", "test") for c in full_plan.clips[split] for t in c.templates}
    assert {t for ids in HELD_OUT_TEMPLATES.values() for t in ids} <= eval_templates


@pytest.mark.parametrize("seed", range(10))
def test_neighbouring_scenes_differ_in_place_or_time(full_plan, seed: int) -> None:
    small = plan_splits(seed, synth.SMALL.n_train_clips, synth.SMALL.n_val_clips, synth.SMALL.n_test_clips)
    for plan in (full_plan, small):
        for clips in plan.clips.values():
            keys = [(c.scene.attributes.place, c.scene.attributes.time) for c in clips]
            assert all(a != b for a, b in itertools.pairwise(keys)), keys


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_test_clips": 7}, "even"),
        ({"n_val_clips": -2}, "even"),
        ({"n_test_clips": 4000}, "do not fit"),
        ({"fps": 7, "scene_seconds": 20.1}, "whole number of frames"),
        ({"size": (127, 128)}, "even"),
        ({"clips_per_film": 0}, "clips_per_film"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(tmp_path: Path, kwargs: dict, message: str) -> None:
    settings = {**synth.SMALL.to_kwargs(), **kwargs}
    with pytest.raises(ValueError, match=message):
        synth.generate_corpus(tmp_path / "out", workers=1, **settings)
    assert not (tmp_path / "out").exists()


# -- the rendered corpus -----------------------------------------------------------------------------------


def test_same_seed_gives_the_same_bytes_whatever_the_worker_count(corpus: Path, tmp_path: Path) -> None:
    reports: list[tuple[int, int]] = []
    again = synth.generate_corpus(tmp_path, seed=7, workers=2, progress=lambda *r: reports.append(r),
                                  **synth.SMALL.to_kwargs())
    assert tree_digest(again.out_dir) == tree_digest(corpus)
    films = sum(again.films.values())
    assert reports[-1] == (films, films) and len(reports) > 1
    other = plan_splits(8, synth.SMALL.n_train_clips, synth.SMALL.n_val_clips, synth.SMALL.n_test_clips)
    mine = plan_splits(7, synth.SMALL.n_train_clips, synth.SMALL.n_val_clips, synth.SMALL.n_test_clips)
    assert other != mine


def test_existing_corpus_is_not_overwritten_by_accident(corpus: Path, capsys: pytest.CaptureFixture) -> None:
    before = tree_digest(corpus)
    assert cli("--out", str(corpus), "--preset", "small", "--seed", "7", "--workers", "1") == 2
    assert "already holds a corpus" in capsys.readouterr().err
    assert tree_digest(corpus) == before


def test_manifest_and_summary_agree(corpus: Path, entries: list[ManifestEntry]) -> None:
    summary = json.loads((corpus / "corpus.json").read_text(encoding="utf-8"))
    assert summary["seed"] == 7
    for split in ("train", "val", "test"):
        clips = {e.clip_id for e in entries if e.split == split}
        assert summary["counts"][split]["clips"] == len(clips) == getattr(synth.SMALL, f"n_{split}_clips")
        assert summary["counts"][split]["captions"] == 2 * len(clips)
    lines = (corpus / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert list(first) == ["clip_id", "video", "start_s", "end_s", "caption", "language", "split", "attributes",
                           "template"]
    assert first["video"].startswith("videos/film_") and first["clip_id"].startswith("film_")
    for e in entries:
        assert e.video.is_absolute() and e.video.exists()
        assert e.clip_id == f"{e.video.stem}:{round(e.start_s * 1000):09d}"
        assert e.end_s - e.start_s == 20.0 and e.start_s % 20.0 == 0
        assert e.caption == caption(Attributes.from_dict(e.attributes), e.template)
        assert e.language == e.template.partition("-")[0]
        if e.split == "train":
            assert e.template in TRAIN_TEMPLATES[e.language]
    for split in ("val", "test"):
        for language in ("ko", "en"):
            captions = [e.caption for e in entries if e.split == split and e.language == language]
            assert len(set(captions)) == len(captions)


def test_films_decode_with_the_right_size_duration_and_cuts(entries: list[ManifestEntry]) -> None:
    sampler = FrameSampler(num_frames=4, size=128, threads=1)
    fps = synth.SMALL.fps
    scenes = Counter(e.video for e in clips_of(entries))
    for video, n_scenes in scenes.items():
        info = sampler.probe(video)
        assert (info.width, info.height, info.codec, info.pix_fmt) == (128, 128, "h264", "yuv420p")
        assert info.duration_s == pytest.approx(20.0 * n_scenes, abs=1 / fps)
        for cut in range(1, n_scenes):
            # Four frames 1/8 s apart straddle the cut: only the middle step crosses it.
            clip = sampler.sample(video, 20.0 * cut - 2 / fps, 20.0 * cut + 2 / fps)
            frames = clip.frames.astype(np.float32)
            steps = [float(np.abs(b - a).mean()) for a, b in itertools.pairwise(frames)]
            assert steps[1] > 3.0 and steps[1] > 20 * max(steps[0], steps[2]), (video, cut, steps)


def _centroids(frames: np.ndarray) -> np.ndarray:
    """Where the moving objects are: pixels away from the static background (the per-pixel median)."""
    background = np.median(frames.astype(np.float32), axis=0)
    moving = np.abs(frames.astype(np.float32) - background).sum(axis=-1) > 60.0
    ys, xs = np.mgrid[: frames.shape[1], : frames.shape[2]]
    return np.array([(xs[m].mean(), ys[m].mean()) for m in moving])


def test_objects_move_in_the_captioned_direction(entries: list[ManifestEntry]) -> None:
    sampler = FrameSampler(num_frames=12, size=128, threads=1)
    for e in clips_of(entries):
        centres = _centroids(sampler.sample(e.video, e.start_s, e.end_s).frames)
        dx, dy = centres[-1] - centres[0]
        along, across = {"right": (dx, dy), "left": (-dx, dy), "down": (dy, dx), "up": (-dy, dx)}[
            e.attributes["motion"]
        ]
        assert along > 0.5 * 128 and abs(across) < 0.1 * 128, (e.caption, dx, dy)
        steps = np.diff(centres[:, 0 if e.attributes["motion"] in ("left", "right") else 1])
        assert np.all(np.sign(steps) == np.sign(steps.sum())), e.caption  # steadily, never back


def test_a_test_pair_is_the_same_frames_in_reverse(entries: list[ManifestEntry]) -> None:
    """What makes direction a test of temporal modelling: without frame order the two clips are alike."""
    sampler = FrameSampler(num_frames=12, size=128, threads=1)
    test = {json.dumps(e.attributes, sort_keys=True): e for e in clips_of(entries) if e.split == "test"}
    checked = 0
    for e in test.values():
        if e.attributes["motion"] not in ("left", "up"):
            continue
        partner = test[json.dumps({**e.attributes, "motion": OPPOSITE[e.attributes["motion"]]}, sort_keys=True)]
        forward = sampler.sample(partner.video, partner.start_s, partner.end_s).frames
        backward = sampler.sample(e.video, e.start_s, e.end_s).frames
        backdrop_gap = np.abs(np.median(forward, axis=0) - np.median(backward, axis=0)).mean()
        assert backdrop_gap < 2.0, (e.caption, backdrop_gap)  # the same backdrop, up to coding noise
        path, reversed_path = _centroids(forward), _centroids(backward)[::-1]
        assert np.abs(path - reversed_path).max() < 2.0, e.caption  # the same positions, in reverse order
        assert np.abs(path - reversed_path[::-1]).max() > 40.0, e.caption
        checked += 1
    assert checked == synth.SMALL.n_test_clips // 2


# -- reading manifests ------------------------------------------------------------------------------------

GOOD = {
    "clip_id": "film_0003:000040000", "video": "videos/film_0003.mp4", "start_s": 40.0, "end_s": 60.0,
    "caption": "at night two red balls move right over the sea", "language": "en", "split": "test",
    "attributes": {"shape": "circle"}, "template": "en-0",
}


def test_reader_resolves_videos_against_the_manifest_directory(tmp_path: Path) -> None:
    absolute = {**GOOD, "video": "/data/film.mp4", "clip_id": "film:000040000"}
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(absolute) + "\n", encoding="utf-8")
    first, second = read_manifest(path)
    assert first.video == tmp_path / "videos" / "film_0003.mp4"
    assert first.video_id == "film_0003" and first.start_s == 40.0 and first.attributes == {"shape": "circle"}
    assert second.video == Path("/data/film.mp4")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "caption"}), "missing field.*caption"),
        (json.dumps({**GOOD, "end_s": 40.0}), "end_s .* must be after start_s"),
        (json.dumps({**GOOD, "start_s": "40"}), "start_s must be a finite number"),
        (json.dumps({**GOOD, "split": "dev"}), "split must be one of"),
        (json.dumps({**GOOD, "language": "fr"}), "language must be one of"),
        (json.dumps({**GOOD, "caption": " "}), "caption must be a non-empty string"),
        (json.dumps({**GOOD, "clip_id": "film_0003"}), "clip_id must be"),
        (json.dumps({**GOOD, "clip_id": "film_0003:000020000"}), "does not match start_s"),
        (json.dumps({**GOOD, "attributes": []}), "attributes must be an object"),
    ],
)
def test_reader_names_the_bad_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"manifest\.jsonl:2: .*{message}"):
        read_manifest(path)

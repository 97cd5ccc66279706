"""Which scenes go to train, val and test, and in what order they are cut together into films.

Evaluation clips come in pairs that differ only in motion direction (left/right or up/down) and
share their look, so a model that pools frames without order cannot tell the two apart. No
evaluation clip's attribute combination occurs in training, and some (shape, colour, place)
triples occur only in val or only in test, to measure compositional generalisation.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.training.captions import TEMPLATE_IDS, TRAIN_TEMPLATES
from services.training.scenes import AXES, COLOURS, COUNTS, PLACES, SHAPES, TIMES, Attributes, Scene

Triple = tuple[str, str, str]  # (shape, colour, place)
Base = tuple[Triple, int, str, str]  # (triple, count, time, axis): a scene without its direction
BASES_PER_TRIPLE = len(COUNTS) * len(TIMES) * len(AXES)
EVAL_SPLITS = ("val", "test")


@dataclass(frozen=True)
class PlannedClip:
    """A scene, its split, and the caption template chosen for each language."""

    scene: Scene
    split: str
    templates: tuple[str, ...]  # template ids, one per language, e.g. ("ko-2", "en-0")


@dataclass(frozen=True)
class SplitPlan:
    """Every clip of the corpus per split, in film order, and the triples held out for val and test."""

    clips: dict[str, list[PlannedClip]]
    held_out_triples: dict[str, list[Triple]]


def rng_for(seed: int, purpose: str) -> np.random.Generator:
    """An independent random stream per purpose: e.g. the training set's size never changes val or test."""
    return np.random.default_rng([seed, zlib.crc32(purpose.encode())])


def plan_splits(seed: int, n_train: int, n_val: int, n_test: int) -> SplitPlan:
    """Choose every clip's attributes, look and caption templates; raises ValueError if they cannot fit."""
    sizes = {"val": n_val, "test": n_test}
    for split, n in sizes.items():
        if n < 0 or n % 2:
            raise ValueError(f"n_{split}_clips must be even and not negative (clips come in pairs), got {n}")
    if n_train < 0:
        raise ValueError(f"n_train_clips must not be negative, got {n_train}")
    pairs = {split: n // 2 for split, n in sizes.items()}
    novel = {split: math.ceil(pairs[split] / 2) for split in EVAL_SPLITS}  # pairs from held-out triples

    # Interleaving spreads every prefix over places and times of day: evaluation sets stay balanced,
    # and a film can always cut between different backdrops.
    triples: list[Triple] = list(itertools.product(SHAPES, COLOURS, PLACES))
    remaining = _interleaved(triples, lambda t: t[2], rng_for(seed, "triples"))
    held_out: dict[str, list[Triple]] = {}
    for split in EVAL_SPLITS:
        k = math.ceil(novel[split] / BASES_PER_TRIPLE)
        held_out[split], remaining = sorted(remaining[:k]), remaining[k:]
    seen_bases = _interleaved(_bases(sorted(remaining)), _backdrop, rng_for(seed, "seen-bases"))
    seen_needed = sum(pairs[s] - novel[s] for s in EVAL_SPLITS)
    if not remaining or seen_needed > len(seen_bases):
        raise ValueError(
            f"{n_val} val and {n_test} test clips do not fit the attribute space with combinations left "
            f"for training; at most about {len(triples) * BASES_PER_TRIPLE} pairs exist"
        )

    clips: dict[str, list[PlannedClip]] = {}
    for split in EVAL_SPLITS:
        rng = rng_for(seed, f"{split}-clips")
        novel_bases = _interleaved(_bases(held_out[split]), _backdrop, rng)[: novel[split]]
        n_seen = pairs[split] - novel[split]
        chosen, seen_bases = novel_bases + seen_bases[:n_seen], seen_bases[n_seen:]
        clips[split] = [clip for base in chosen for clip in _pair(base, split, rng)]

    rng = rng_for(seed, "train-clips")
    pool = [base_attributes(base, motion) for base in seen_bases for motion in AXES[base[3]]]
    if n_train and not pool:
        raise ValueError("no attribute combinations are left for training; ask for fewer val/test clips")
    train: list[PlannedClip] = []
    while len(train) < n_train:  # beyond the pool's size, combinations repeat with new looks
        for attributes in _shuffled(pool, rng)[: n_train - len(train)]:
            templates = tuple(str(rng.choice(ids)) for ids in TRAIN_TEMPLATES.values())
            train.append(PlannedClip(Scene(attributes, _look_seed(rng)), "train", templates))
    clips["train"] = train
    for split, split_clips in clips.items():
        clips[split] = order_for_cuts(split_clips, rng_for(seed, f"{split}-order"))
    return SplitPlan({split: clips[split] for split in ("train", "val", "test")}, held_out)


def base_attributes(base: Base, motion: str) -> Attributes:
    (shape, colour, place), count, time, _axis = base
    return Attributes(shape=shape, colour=colour, count=count, motion=motion, place=place, time=time)


def _bases(triples: Sequence[Triple]) -> list[Base]:
    return [(t, c, time, axis) for t in triples for c in COUNTS for time in TIMES for axis in AXES]


def _shuffled(items: list, rng: np.random.Generator) -> list:
    return [items[i] for i in rng.permutation(len(items))]


def _backdrop(base: Base) -> tuple[str, str]:
    return (base[0][2], base[2])  # (place, time)


def _interleaved(items: list, key: Callable[[Any], Any], rng: np.random.Generator) -> list:
    """The items shuffled, then dealt round-robin from each ``key`` group, so any prefix is balanced."""
    groups: dict[Any, list] = {}
    for item in _shuffled(items, rng):
        groups.setdefault(key(item), []).append(item)
    columns = _shuffled(list(groups.values()), rng)
    return [column[i] for i in range(max(map(len, columns), default=0)) for column in columns if i < len(column)]


def _look_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


def _pair(base: Base, split: str, rng: np.random.Generator) -> list[PlannedClip]:
    """Both directions of a base, with one look and one template per language between them."""
    look = _look_seed(rng)
    templates = tuple(str(rng.choice(TEMPLATE_IDS[language])) for language in TEMPLATE_IDS)
    return [PlannedClip(Scene(base_attributes(base, m), look), split, templates) for m in AXES[base[3]]]


def order_for_cuts(clips: Sequence[PlannedClip], rng: np.random.Generator) -> list[PlannedClip]:
    """Order clips so that neighbours differ in place or time of day, which makes every cut visible.

    Always taking from the largest remaining (place, time) group that differs from the previous
    clip's never runs out of choices while no group holds more than half of what is left.
    """
    groups: dict[tuple[str, str], list[PlannedClip]] = {}
    for clip in _shuffled(list(clips), rng):
        groups.setdefault(_cut_key(clip), []).append(clip)
    ordered: list[PlannedClip] = []
    previous = None
    while groups:
        keys = sorted(groups)
        ties = rng.permutation(len(keys))
        candidates = [k for k in keys if k != previous] or keys
        key = max(candidates, key=lambda k: (len(groups[k]), ties[keys.index(k)]))
        ordered.append(groups[key].pop())
        if not groups[key]:
            del groups[key]
        previous = key
    return ordered


def _cut_key(clip: PlannedClip) -> tuple[str, str]:
    return (clip.scene.attributes.place, clip.scene.attributes.time)


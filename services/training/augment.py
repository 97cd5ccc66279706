"""Caption augmentations for training on the synthetic corpus, from each entry's attributes and template.

Paraphrases: a training clip is captioned with one template per language, but any training template
describes it as truly, so each clip gets every training template of its caption's language.
Time reversal: a clip played backwards shows the opposite motion (the renderer draws left/up as
right/down reversed), so a reversed copy captioned with the opposite direction is a true pair --
and, in the same batch as the original, the hard negative that a motion twin is at evaluation.
Neither ever uses a held-out template, and reversal keeps a clip's base (shape, colour, place,
count, time, axis), whose both directions the split plan gives to training together.
"""

from __future__ import annotations

from typing import Any

from services.training.captions import TRAIN_TEMPLATES, caption
from services.training.scenes import AXES, Attributes

#: Each motion and the one a clip shows when its frames play backwards.
REVERSED_MOTION = {a: b for a, b in AXES.values()} | {b: a for a, b in AXES.values()}


class AugmentationError(ValueError):
    """An entry lacks the synthetic attributes or training template an augmentation needs."""


def _attributes_and_template(entry: Any) -> tuple[Attributes, str]:
    template = getattr(entry, "template", None)
    language = template.partition("-")[0] if isinstance(template, str) else None
    if language not in TRAIN_TEMPLATES or template not in TRAIN_TEMPLATES[language]:
        raise AugmentationError(f"{entry.clip_id}: caption template {template!r} is not a synthetic training "
                                "template; caption augmentation needs a corpus made by `vidsearch synth`")
    try:
        return Attributes.from_dict(entry.attributes or {}), template
    except (KeyError, TypeError, ValueError) as exc:
        raise AugmentationError(f"{entry.clip_id}: no synthetic scene attributes ({exc})") from exc


def paraphrase_templates(entry: Any) -> tuple[str, ...]:
    """The training templates of the entry's caption language, its own first."""
    _, template = _attributes_and_template(entry)
    language = template.partition("-")[0]
    return (template, *(t for t in TRAIN_TEMPLATES[language] if t != template))


def captions_of(entry: Any, templates: tuple[str, ...], reverse: bool = False) -> tuple[str, ...]:
    """The entry's scene under each template, with the motion reversed when ``reverse``."""
    attributes, _ = _attributes_and_template(entry)
    if reverse:
        attributes = attributes.with_motion(REVERSED_MOTION[attributes.motion])
    return tuple(caption(attributes, t) for t in templates)

"""What a synthetic scene shows: the attribute vocabulary shared by the renderer and the captioner."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SHAPES = ("circle", "square", "triangle", "star", "diamond")
COLOURS = ("red", "blue", "green", "yellow", "white", "purple")
COUNTS = (1, 2, 3)
MOTIONS = ("left", "right", "up", "down")
PLACES = ("sea", "forest", "city", "desert", "studio")
TIMES = ("day", "night")

#: The two directions along each axis; an evaluation pair differs only in which one it takes.
AXES = {"horizontal": ("left", "right"), "vertical": ("up", "down")}


@dataclass(frozen=True, order=True)
class Attributes:
    """Everything a caption says about a scene; every object in a scene looks and moves alike."""

    shape: str
    colour: str
    count: int
    motion: str
    place: str
    time: str

    def __post_init__(self) -> None:
        for name, allowed in (
            ("shape", SHAPES),
            ("colour", COLOURS),
            ("count", COUNTS),
            ("motion", MOTIONS),
            ("place", PLACES),
            ("time", TIMES),
        ):
            value = getattr(self, name)
            if value not in allowed or isinstance(value, bool):
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")

    @property
    def axis(self) -> str:
        return "horizontal" if self.motion in AXES["horizontal"] else "vertical"

    @property
    def triple(self) -> tuple[str, str, str]:
        """(shape, colour, place): the unit whose combinations are held out for evaluation."""
        return (self.shape, self.colour, self.place)

    def with_motion(self, motion: str) -> Attributes:
        return dataclasses.replace(self, motion=motion)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attributes:
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})


@dataclass(frozen=True)
class Scene:
    """One shot of a film: its attributes and the seed of its look (textures, sizes, path).

    The path is drawn for the axis's forward direction (right, down); ``left`` and ``up`` play
    the same path backwards. Two scenes with the same look seed and opposite motions are thus
    the same frames in reverse order: only a model that sees frame order can tell them apart.
    """

    attributes: Attributes
    look_seed: int

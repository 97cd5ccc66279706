"""Published CLIP-family weights as vidsearch checkpoints, their maths unchanged.

One module per source layout reads local files into a `VisionPart` and a `TextPart`;
`import_model` pairs them and writes a normal checkpoint directory (``vidsearch model import``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.model.importers.assemble import ImportResult, import_model

__all__ = ["ImportResult", "import_model"]


def __getattr__(name: str) -> Any:
    """``assemble`` (torch, open_clip) loads on first use, so that ``vidsearch``'s parser, which imports
    every subcommand's module (``importers.cli`` among them), builds without the model stack."""
    if name in __all__:
        from services.model.importers import assemble

        return getattr(assemble, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

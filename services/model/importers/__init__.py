"""Published CLIP-family weights as vidsearch checkpoints, their maths unchanged.

One module per source layout reads local files into a `VisionPart` and a `TextPart`;
`import_model` pairs them and writes a normal checkpoint directory (``vidsearch model import``).
"""

from services.model.importers.assemble import ImportResult, import_model

__all__ = ["ImportResult", "import_model"]

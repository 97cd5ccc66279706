"""Prints the pinned runtime dependencies of pyproject.toml for one image, one per line.

The CPU image (index, gateway, ingest) leaves out the model stack, which only the encoder
imports; the pins themselves stay in pyproject.toml, the one place they are declared.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

# Only services/encoder (and services/training, which no image runs) import these.
MODEL_STACK = frozenset({"torch", "torchvision", "transformers", "tokenizers", "safetensors", "open-clip-torch",
                         "onnx", "onnxruntime"})


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: Path, image: str) -> list[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    if image == "encoder":
        return list(deps)
    return [d for d in deps if _name(d) not in MODEL_STACK]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("image", choices=("cpu", "encoder"))
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    sys.stdout.write("".join(f"{line}\n" for line in requirements(args.pyproject, args.image)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

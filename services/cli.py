"""The ``vidsearch`` command line: run services and the demo."""

from __future__ import annotations

import argparse
import sys

from services.common.settings import SettingsError


def _serve(module: str) -> None:
    import importlib

    importlib.import_module(f"services.{module}.server").main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidsearch", description="Content-based video retrieval.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("index", help="run one index shard (settings from VIDSEARCH_INDEX_*)")
    sub.add_parser("encoder", help="run the encoder (settings from VIDSEARCH_ENCODER_*)")
    demo = sub.add_parser("demo", help="start a local shard, load clips, search, print the hits")
    demo.add_argument("--data-dir", default=".demo", help="where the demo keeps its data")
    demo.add_argument("--clips", type=int, default=20_000, help="clips to load")
    args = parser.parse_args(argv)
    try:
        if args.command in ("index", "encoder"):
            _serve(args.command)
        elif args.command == "demo":
            from services.demo import run_demo

            return run_demo(args.data_dir, args.clips)
    except SettingsError as exc:
        print(f"vidsearch: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

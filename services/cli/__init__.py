"""The ``vidsearch`` command line: run services, the local stack, search, ingest, train and the demo."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from services.common.settings import SettingsError

SERVICES = ("index", "encoder", "ingest", "gateway", "web")


def _serve(args) -> int:
    importlib.import_module(f"services.{args.service}.server").main()
    return 0


def _commands() -> list[Callable[[argparse._SubParsersAction], object]]:
    """Every subcommand's registration, in help order. Each registers its parsers and their ``run``."""
    from services.cli import replicas, search
    from services.ingest import cli as ingest_cli
    from services.local import demo, up
    from services.model.importers import cli as model_cli
    from services.training import cli as training_cli
    from services.training import synth

    return [up.add_parser, search.add_parser, ingest_cli.add_parser, replicas.add_parser, training_cli.add_parsers,
            synth.add_parser, demo.add_parser, model_cli.add_parsers]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidsearch", description="Content-based video retrieval.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run one service; settings from VIDSEARCH_<SERVICE>_* variables")
    serve.add_argument("service", choices=SERVICES)
    serve.set_defaults(run=_serve)
    for register in _commands():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except SettingsError as exc:
        print(f"vidsearch: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``vidsearch`` command line: run services, the local stack, search, ingest, train and the demo."""

from __future__ import annotations

import argparse
import importlib
import sys

from services.common.settings import SettingsError

SERVICES = ("index", "encoder", "ingest", "gateway", "web")
# Modules that register subcommands with add_parser(sub) or add_parsers(sub).
COMMAND_MODULES = ("services.up", "services.search_cli", "services.ingest.cli", "services.training.cli",
                   "services.training.synth", "services.demo", "services.encoder.model.importers.cli")


def _serve(args) -> int:
    importlib.import_module(f"services.{args.service}.server").main()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidsearch", description="Content-based video retrieval.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run one service; settings from VIDSEARCH_<SERVICE>_* variables")
    serve.add_argument("service", choices=SERVICES)
    serve.set_defaults(run=_serve)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part of the system is not installed in this checkout
            raise
        register = getattr(module, "add_parsers", None) or module.add_parser
        added = register(sub)
        # A module with one command may leave dispatch to its module-level run(args).
        if isinstance(added, argparse.ArgumentParser) and added.get_default("run") is None:
            added.set_defaults(run=module.run)
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

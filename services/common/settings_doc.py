"""Writes docs/settings.md, the reference of every service's VIDSEARCH_* settings, from the settings classes.

The names, types, defaults and descriptions come from the dataclasses themselves (each field is a
``settings.setting(default, doc)``), so the page cannot drift from the code; a test fails when
the committed page is stale. Regenerate with ``python -m services.common.settings_doc --write``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.settings import ServerSettings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "settings.md"
REGENERATE = "python -m services.common.settings_doc --write"
# (service, variable prefix, module, settings class, how it runs). A new service belongs here.
SERVICES = (
    ("index", "VIDSEARCH_INDEX", "services.index.server", "IndexSettings", "`python -m services.index`"),
    ("encoder", "VIDSEARCH_ENCODER", "services.encoder.server", "EncoderSettings", "`python -m services.encoder`"),
    ("ingest", "VIDSEARCH_INGEST", "services.ingest.settings", "IngestSettings",
     "`python -m services.ingest` (API server) and `python -m services.ingest.worker` (standalone workers)"),
    ("gateway", "VIDSEARCH_GATEWAY", "services.gateway.server", "GatewaySettings", "`python -m services.gateway`"),
    ("web", "VIDSEARCH_WEB", "services.web.settings", "WebSettings", "`python -m services.web` (HTTP, not gRPC)"),
)
# Read straight from the environment rather than through a settings class: (name, type, default, doc).
OTHER_VARIABLES = (
    ("VIDSEARCH_LOG_LEVEL", "string", "`INFO`", "Log level of every service's JSON logs on stdout "
     "(`services/common/logs.py`)."),
    ("VIDSEARCH_HEALTHCHECK_TLS_CA", "path", "unset", "CA the container health check (`docker/healthcheck.py`) "
     "trusts; set, it speaks TLS."),
    ("VIDSEARCH_HEALTHCHECK_TLS_CERT", "path", "unset", "Client certificate of the health check, for mutual TLS."),
    ("VIDSEARCH_HEALTHCHECK_TLS_KEY", "path", "unset", "Private key of that client certificate."),
    ("VIDSEARCH_HEALTHCHECK_TLS_SERVER_NAME", "string", "unset", "Name the health check verifies the server's "
     "certificate against (it dials 127.0.0.1)."),
    ("VIDSEARCH_MODELS_DIR", "path", "`./models`", "docker compose: host directory of checkpoints, mounted "
     "read-only at /models in the encoder."),
    ("VIDSEARCH_MODEL", "string", "`current`", "docker compose: the checkpoint under VIDSEARCH_MODELS_DIR the "
     "encoder loads."),
)
_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", Path: "path"}
BAR = r"\|"  # a bare | in a description would end its table cell


def type_name(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return type_name(inner)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        return f"list of {type_name(item)}s"
    return _TYPES[kind]


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f" ({n // scale} {unit})"
    return ""


def default_text(field: dataclasses.Field[Any]) -> str:
    value = field.default
    if value is dataclasses.MISSING:
        return "**required**"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return f"`{','.join(map(str, value))}`" if value else "empty"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, int):
        return f"`{value}`" + (_size(value) if field.name.endswith("_bytes") else "")
    return f"`{value}`" if value != "" else "empty"


def settings_of(cls: type[DataclassInstance], prefix: str) -> list[tuple[str, str, str, str]]:
    """(variable, type, default, description) per setting of ``cls``; nested dataclasses extend the prefix,
    and the shared server settings are left out."""
    hints = typing.get_type_hints(cls)
    out = []
    for field in dataclasses.fields(cls):
        kind, name = hints[field.name], f"{prefix}_{field.name}".upper()
        if kind is ServerSettings:
            continue
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            out.extend(settings_of(kind, name))
            continue
        doc = field.metadata.get("help", "")
        if not doc:
            raise ValueError(f"{cls.__name__}.{field.name} has no description: declare it with settings.setting()")
        out.append((name, type_name(kind), default_text(field), doc))
    return out


def _table(settings: list[tuple[str, str, str, str]]) -> str:
    lines = [f"| `{name}` | {kind} | {default} | {doc.replace('|', BAR)} |" for name, kind, default, doc in settings]
    return "| variable | type | default | description |\n|---|---|---|---|\n" + "\n".join(lines) + "\n"


def _service_classes() -> list[tuple[str, str, type, str]]:
    return [(service, prefix, getattr(importlib.import_module(module), name), command)
            for service, prefix, module, name, command in SERVICES]


def variables() -> set[str]:
    """Every variable the reference documents, with the server settings spelled out per service."""
    names = {name for name, *_ in OTHER_VARIABLES}
    for _, prefix, cls, _ in _service_classes():
        names.update(name for name, *_ in settings_of(cls, prefix))
        if _has_server_settings(cls):
            names.update(name for name, *_ in settings_of(ServerSettings, f"{prefix}_SERVER"))
    return names


def _has_server_settings(cls: type) -> bool:
    return ServerSettings in typing.get_type_hints(cls).values()


def render() -> str:
    parts = [
        "# Settings reference\n",
        f"Generated from the settings classes by `{REGENERATE}`; do not edit by hand.\n",
        "Each service reads `VIDSEARCH_<SERVICE>_<FIELD>` variables once at start-up "
        "(`services/common/settings.py`) and does not start when a required one is missing or a value "
        "is malformed. Lists are comma-separated; booleans take `1`/`true`/`yes`/`on` or "
        "`0`/`false`/`no`/`off`; an empty value of an optional setting leaves it unset. "
        "In Kubernetes they come from `deploy/k8s/base/config/<service>.env` "
        "([deploy/README.md](../deploy/README.md)).\n",
        "The command-line and Node.js clients use `VIDSEARCH_CLIENT_*` variables instead: see "
        "[clients.md](clients.md#client-settings-one-set-of-names).\n",
    ]
    for service, prefix, cls, command in _service_classes():
        parts.append(f"## {service}: `{prefix}_*`\n")
        parts.append(f"{(cls.__doc__ or '').strip()} Runs as {command}.\n")
        parts.append(_table(settings_of(cls, prefix)))
        if _has_server_settings(cls):
            parts.append(f"And the [server settings](#server-settings) as `{prefix}_SERVER_*`.\n")
    parts.append("## Server settings\n")
    parts.append(f"{ServerSettings.__doc__} Every service above has them under its own prefix, "
                 "e.g. `VIDSEARCH_INGEST_SERVER_PORT`.\n")
    parts.append(_table(settings_of(ServerSettings, "VIDSEARCH_<SERVICE>_SERVER")))
    parts.append("## Other variables\n")
    parts.append("Read directly from the environment, not through a settings class.\n")
    parts.append(_table(list(OTHER_VARIABLES)))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"write {DOC.relative_to(ROOT)}")
    action.add_argument("--check", action="store_true", help=f"exit 1 when {DOC.relative_to(ROOT)} is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        DOC.write_text(text, encoding="utf-8")
    elif args.check:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC.relative_to(ROOT)} is stale; regenerate it with `{REGENERATE}`", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``vidsearch reindex --checkpoint models/NEW``: switch the running local stack to a new model, online.

The command asks the ``vidsearch up`` of the data directory (``services.local.requests``), which
starts the new model's encoder and empty shards beside the running ones, re-embeds every indexed
video from its stored source into them (``services.ingest.reembed``) while searches and ingest go on
with the old model (``services.index.migrate``), switches every search at once, and stops the old
encoder and shards. Exit status 0 on success; 1 when the re-index failed (the old model then stays
active) or could not start; 2 for a checkpoint that is not one.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from services.common import settings
from services.common.errors import WrongState
from services.index.migrate import MigrationOptions
from services.ingest.reembed import reembed_filler
from services.ingest.settings import IngestSettings
from services.local import requests
from services.local.migrations import migrate_stack
from services.local.reshard import print_status
from services.local.stack import LocalStack

KIND = "reindex"
#: Kinds of request that migrate the index; one at a time.
MIGRATIONS = ("reindex", "reshard")


def handle(stack: LocalStack, request: dict[str, Any], report: requests.Report) -> dict[str, Any]:
    """Carries out a reindex request on the running stack."""
    if not stack.has_ingest:
        raise WrongState("re-indexing needs the stack's Redis and ingest (a `vidsearch up` without --no-redis)")
    from services.model.checkpoint import recorded_model_id  # the model stack: see run()

    checkpoint = Path(request["checkpoint"])
    model_id = recorded_model_id(checkpoint)
    active = stack.describe_generation()
    if model_id == active.model_id:
        raise WrongState(f"{checkpoint} is model {model_id}, which the stack already serves (generation "
                         f"{active.name}): nothing to re-index")
    # Re-embedding reads the sources as the stack's ingest workers do: same media store and allowed roots.
    cfg = settings.load(IngestSettings, "VIDSEARCH_INGEST", stack.ingest_process().env)
    options = MigrationOptions(**request.get("options", {}))
    result = asyncio.run(migrate_stack(stack, checkpoint=checkpoint, n_shards=len(stack.replicas), replicas=None,
                                       make_filler=functools.partial(reembed_filler, cfg), options=options,
                                       progress=lambda p: report(p.to_json())))
    return {"from": active.name, "from_model_id": active.model_id, "generation": stack.active,
            "model_id": model_id, "shards": stack.shard_targets.split(","),
            "clips_written": result.progress.clips_written, "passes": result.progress.passes,
            "seconds": round(result.seconds, 1), "notes": result.notes}


requests.HANDLERS[KIND] = handle


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reindex", help="switch a running `vidsearch up` to a new model: re-embed every clip, "
                                       "then switch searches at once")
    p.add_argument("--checkpoint", type=Path, required=True, help="the new model's checkpoint directory")
    p.add_argument("--data-dir", type=Path, default=Path(".vidsearch"), help="the data directory `up` runs on")
    p.add_argument("--grace-seconds", type=float, default=MigrationOptions.grace_s,
                   help="after the switch, how long searches still on the old model may take")
    p.set_defaults(run=run)


def migrations_in_flight(data_dir: Path) -> list[str]:
    """Migration requests written to ``up`` that have not finished (queued or running)."""
    folder = requests.requests_dir(data_dir)
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        if path.name.endswith(".status.json"):
            continue
        try:
            kind = json.loads(path.read_text()).get("kind")
        except (OSError, json.JSONDecodeError):
            continue
        status = requests.read_status(data_dir, path.stem)
        if kind in MIGRATIONS and (status is None or status.get("state") not in requests.FINAL_STATES):
            found.append(f"{path.stem} ({kind}, {status['state'] if status else 'queued'})")
    return found


def run(args) -> int:
    # Imported here, not with the module: every subcommand's module is imported to build the parser, and
    # the CLI must work without the model stack (the service image has no torch: `vidsearch replicas`).
    from services.model.checkpoint import CheckpointError, recorded_model_id

    checkpoint = args.checkpoint.resolve()
    try:
        model_id = recorded_model_id(checkpoint)
    except CheckpointError as exc:
        print(f"no model at {args.checkpoint}: {exc}")
        return 2
    if busy := migrations_in_flight(args.data_dir):
        print(f"a migration is already running on {args.data_dir}: {', '.join(busy)}; wait for it to finish")
        return 1
    options = dataclasses.asdict(MigrationOptions(grace_s=args.grace_seconds))
    request_id = requests.submit(args.data_dir, KIND, checkpoint=str(checkpoint), options=options)
    print(f"re-indexing to model {model_id} ({args.checkpoint}): request {request_id} sent to the "
          f"`vidsearch up` on {args.data_dir}", flush=True)
    try:
        final = requests.follow(args.data_dir, request_id, print_status)
    except TimeoutError as exc:
        # Withdrawn, so that a `vidsearch up` started later does not re-index unasked.
        (requests.requests_dir(args.data_dir) / f"{request_id}.json").unlink(missing_ok=True)
        print(f"{exc}; request withdrawn")
        return 1
    return 0 if final["state"] == "succeeded" else 1

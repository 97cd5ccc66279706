"""``vidsearch up``: the whole system on loopback until Ctrl-C, carrying out the requests of commands
such as ``vidsearch reshard`` (``services.local.requests``) meanwhile."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from services.local import reshard  # noqa: F401 - registers its request handler
from services.local.requests import RequestInbox
from services.local.stack import LocalStack, StackConfig

DEFAULT_MODEL = Path("models/default")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run encoder, shards, ingest, gateway and the web app locally until Ctrl-C")
    p.add_argument("--data-dir", type=Path, default=Path(".vidsearch"), help="where all data and logs go")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_MODEL, help="model checkpoint directory")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--replicas", type=int, default=1,
                   help="copies of each shard; a write is acknowledged once every copy has it, searches "
                        "use any copy that serves, so one copy of every shard may be down without partial results")
    p.add_argument("--encoders", type=int, default=1,
                   help="copies of the encoder; gateway and ingest balance over them and go on while one is down")
    p.add_argument("--workers", type=int, default=1, help="ingest workers")
    p.add_argument("--gateway-port", type=int, default=50051)
    p.add_argument("--ingest-port", type=int, default=50052)
    p.add_argument("--web-port", type=int, default=8080, help="the web app's port on 127.0.0.1 (0: any free port)")
    p.add_argument("--no-redis", action="store_true", help="in-process cache, no ingest queue")
    p.set_defaults(run=run)


def run(args) -> int:
    if not (args.checkpoint / "config.json").is_file():
        print(f"no model at {args.checkpoint}: run `make model` (or pass --checkpoint)")
        return 2
    config = StackConfig(data_dir=args.data_dir, checkpoint=args.checkpoint.resolve(), n_shards=args.shards,
                         replicas=args.replicas, encoders=args.encoders, ingest_workers=args.workers,
                         use_redis=not args.no_redis, gateway_port=args.gateway_port, ingest_port=args.ingest_port,
                         web_port=args.web_port)
    stop = threading.Event()
    # Both handled explicitly: a shell may start background jobs with SIGINT ignored.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stack = LocalStack(config)
    try:
        stack.start()
        info = stack.describe()
        (stack.root / "stack.json").write_text(json.dumps(info, indent=2))
        print(json.dumps(info, indent=2))
        print(f"vidsearch is up. Open {info['web']} in a browser. Ctrl-C stops every service.")
        inbox = RequestInbox(stack)
        while not stop.wait(0.5):
            inbox.poll()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping ...")
        stack.stop()
    return 0

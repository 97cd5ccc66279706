"""Web process: settings from VIDSEARCH_WEB_*, the app served by uvicorn, graceful stop on SIGTERM."""

from __future__ import annotations

import gc
import logging

import uvicorn

from services.common import logs, settings
from services.web.app import create_app
from services.web.settings import WebSettings

log = logging.getLogger(__name__)


def main() -> None:
    logs.configure("web")
    cfg = settings.load_or_exit(WebSettings, "VIDSEARCH_WEB")
    app = create_app(cfg)
    log.info("web app on http://%s:%d (gateway %s, ingest %s, api keys %s)", cfg.server.host, cfg.server.port,
             cfg.gateway, cfg.ingest or "none", "on" if cfg.api_keys_file else "off (loopback only)")
    # Everything built so far (modules, FastAPI's routes and models, protobuf descriptors) lives as long as
    # the process: kept out of the collector, a full collection scans only what requests made, not a
    # 30-80 ms pause that stalls every request in flight (bench.web's p99).
    gc.collect()
    gc.freeze()
    # The asyncio loop that grpc.aio supports; httptools parses HTTP when installed (it is pinned).
    uvicorn.run(app, host=cfg.server.host, port=cfg.server.port, log_config=None, access_log=False, loop="asyncio",
                timeout_graceful_shutdown=cfg.server.grace_seconds, proxy_headers=False, server_header=False)

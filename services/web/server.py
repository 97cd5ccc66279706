"""Web process: settings from VIDSEARCH_WEB_*, the app served by uvicorn, graceful stop on SIGTERM."""

from __future__ import annotations

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
    # The asyncio loop that grpc.aio supports; httptools parses HTTP when installed (it is pinned).
    uvicorn.run(app, host=cfg.server.host, port=cfg.server.port, log_config=None, access_log=False, loop="asyncio",
                timeout_graceful_shutdown=cfg.server.grace_seconds, proxy_headers=False, server_header=False)

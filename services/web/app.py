"""The ASGI app: the JSON API, the pages (static HTML/JS/CSS built on that API), health, OpenAPI.

``create_app(settings)`` opens the gRPC channels when the app starts and closes them when it stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.channels import ClientTLS
from services.web import api, errors
from services.web.backends import GATEWAY_SERVICE, INGEST_SERVICE, Backends
from services.web.clips import ClipCache
from services.web.security import Keys, SecurityHeaders
from services.web.settings import WebSettings

STATIC = Path(__file__).with_name("static")
PAGES = {"/search": "search.html", "/ingest": "ingest.html"}


def create_app(settings: WebSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tls = ClientTLS(settings.tls_ca_file, server_name=settings.tls_server_name) if settings.tls_ca_file else None
        app.state.backends = Backends(settings.gateway, settings.ingest, tls)
        try:
            yield
        finally:
            await app.state.backends.close()

    app = FastAPI(title="vidsearch", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Search a video archive by text (Korean, English), image, video or clip; "
                              "play clips; upload videos and follow their ingest.")
    app.state.settings = settings
    app.state.keys = Keys(settings.api_keys_file)
    app.state.clips = ClipCache(settings.clip_cache_bytes)
    errors.install(app)
    app.include_router(api.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/search")

    for path, name in PAGES.items():
        def page(name: str = name) -> FileResponse:
            return FileResponse(STATIC / name, media_type="text/html; charset=utf-8",
                                headers={"Cache-Control": "no-cache"})

        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Ready when the gateway (and ingest, when configured) say SERVING."""
        backends: Backends = app.state.backends
        found = {}
        for name, channel in backends.channels().items():
            service = GATEWAY_SERVICE if name == "gateway" else INGEST_SERVICE
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=2)
                found[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                found[name] = f"unreachable: {type(exc).__name__}"
        ready = all(v == "SERVING" for v in found.values())
        return JSONResponse({"ready": ready, "backends": found}, status_code=200 if ready else 503)

    return SecurityHeaders(app, settings.max_upload_bytes, settings.max_query_bytes)  # type: ignore[return-value]

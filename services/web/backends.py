"""The web app's gRPC clients: one channel to the gateway, one to ingest, made and closed with the app."""

from __future__ import annotations

import grpc

from services.common.channels import ClientTLS, open_channel
from services.web.errors import ApiError
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

GATEWAY_SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name
INGEST_SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


class Backends:
    """Stubs of the services the app calls, over channels with the project's options."""

    def __init__(self, gateway: str, ingest: str | None, tls: ClientTLS | None = None) -> None:
        self._gateway_channel = open_channel(gateway, (GATEWAY_SERVICE,), tls)
        self._ingest_channel = open_channel(ingest, (INGEST_SERVICE,), tls) if ingest else None
        self.gateway = gateway_pb2_grpc.SearchServiceStub(self._gateway_channel)
        self._ingest = ingest_pb2_grpc.IngestServiceStub(self._ingest_channel) if self._ingest_channel else None

    @property
    def ingest(self) -> ingest_pb2_grpc.IngestServiceStub:
        if self._ingest is None:
            raise ApiError(503, "this web app has no ingest service configured (VIDSEARCH_WEB_INGEST)")
        return self._ingest

    def channels(self) -> dict[str, grpc.aio.Channel]:
        found = {"gateway": self._gateway_channel}
        if self._ingest_channel is not None:
            found["ingest"] = self._ingest_channel
        return found

    async def close(self) -> None:
        for channel in self.channels().values():
            await channel.close()

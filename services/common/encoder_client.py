"""Async client of the encoder service, used by ingest and the gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from services.common.channels import ClientTLS, call, open_channel
from vidsearch.encoder.v1 import encoder_pb2, encoder_pb2_grpc

SERVICE = "vidsearch.encoder.v1.EncoderService"


def _matrix(
    reply: encoder_pb2.EncodeTextResponse | encoder_pb2.EncodeImagesResponse | encoder_pb2.EncodeVideosResponse,
) -> npt.NDArray[np.float32]:
    return np.array([list(v.values) for v in reply.embeddings], dtype=np.float32)


class EncoderClient:
    """Embeds through a remote encoder; every call carries a deadline."""

    def __init__(self, target: str, *, timeout_s: float = 30.0, tls: ClientTLS | None = None) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._channel = open_channel(target, (SERVICE,), tls)
        self._stub = encoder_pb2_grpc.EncoderServiceStub(self._channel)

    async def _call(self, method: Callable[..., Awaitable[Any]], request: Message, timeout_s: float | None) -> Any:
        return await call(method, request, timeout_s or self.timeout_s, f"encoder at {self.target}")

    async def info(self, timeout_s: float | None = None) -> encoder_pb2.InfoResponse:
        reply: encoder_pb2.InfoResponse = await self._call(self._stub.Info, encoder_pb2.InfoRequest(), timeout_s)
        return reply

    async def encode_texts(self, texts: Sequence[str], language: str = "",
                           timeout_s: float | None = None) -> tuple[npt.NDArray[np.float32], str]:
        reply: encoder_pb2.EncodeTextResponse = await self._call(
            self._stub.EncodeText, encoder_pb2.EncodeTextRequest(texts=list(texts), language=language), timeout_s
        )
        return _matrix(reply), reply.model_id

    async def encode_images(self, images: Sequence[bytes],
                            timeout_s: float | None = None) -> tuple[npt.NDArray[np.float32], str]:
        reply: encoder_pb2.EncodeImagesResponse = await self._call(
            self._stub.EncodeImages, encoder_pb2.EncodeImagesRequest(images=list(images)), timeout_s
        )
        return _matrix(reply), reply.model_id

    async def encode_frames(self, clips: Sequence[npt.NDArray[np.uint8]], timeout_s: float | None = None
                            ) -> tuple[npt.NDArray[np.float32], str]:
        """Clips of uint8 RGB frames ``[n, size, size, 3]`` at the model's resolution."""
        request = encoder_pb2.EncodeVideosRequest(clips=[
            encoder_pb2.VideoClip(frames=encoder_pb2.RawFrames(
                count=c.shape[0], height=c.shape[1], width=c.shape[2], rgb=np.ascontiguousarray(c).tobytes()))
            for c in clips
        ])
        reply: encoder_pb2.EncodeVideosResponse = await self._call(self._stub.EncodeVideos, request, timeout_s)
        return _matrix(reply), reply.model_id

    async def encode_video(self, data: bytes, start_s: float = 0.0, end_s: float = 0.0,
                           timeout_s: float | None = None) -> tuple[npt.NDArray[np.float32], str]:
        request = encoder_pb2.EncodeVideosRequest(clips=[encoder_pb2.VideoClip(
            segment=encoder_pb2.VideoSegment(data=data, start_seconds=start_s, end_seconds=end_s))])
        reply: encoder_pb2.EncodeVideosResponse = await self._call(self._stub.EncodeVideos, request, timeout_s)
        return _matrix(reply), reply.model_id

    async def close(self) -> None:
        await self._channel.close()

"""The EncoderService servicer: request shape checks, the engine, vectors back into messages."""

from __future__ import annotations

import numpy as np

from services.common.errors import InvalidInput
from services.common.readiness import Pending
from services.encoder.engine import EncoderEngine
from vidsearch.common.v1 import common_pb2
from vidsearch.encoder.v1 import encoder_pb2, encoder_pb2_grpc


def vectors_to_proto(matrix: np.ndarray) -> list[common_pb2.Vector]:
    return [common_pb2.Vector(values=row) for row in matrix.astype(np.float32).tolist()]


class EncoderServicer(encoder_pb2_grpc.EncoderServiceServicer):
    """Serves the model once start-up has loaded and warmed it up."""

    def __init__(self, engine: Pending[EncoderEngine]) -> None:
        self.engine = engine

    async def EncodeText(self, request, context):
        engine = self.engine.get()
        vectors = await engine.encode_texts(list(request.texts))
        return encoder_pb2.EncodeTextResponse(embeddings=vectors_to_proto(vectors), model_id=engine.runner.model_id)

    async def EncodeImages(self, request, context):
        engine = self.engine.get()
        vectors = await engine.encode_images(list(request.images))
        return encoder_pb2.EncodeImagesResponse(
            embeddings=vectors_to_proto(vectors), model_id=engine.runner.model_id
        )

    async def EncodeVideos(self, request, context):
        engine = self.engine.get()
        clips = []
        for i, clip in enumerate(request.clips):
            which = clip.WhichOneof("source")
            if which == "frames":
                f = clip.frames
                expected = f.count * f.height * f.width * 3
                if f.count <= 0 or f.height <= 0 or f.width <= 0 or len(f.rgb) != expected:
                    raise InvalidInput(
                        f"clip {i}: rgb has {len(f.rgb)} bytes, expected count*height*width*3 = {expected}"
                    )
                frames = np.frombuffer(f.rgb, dtype=np.uint8).reshape(f.count, f.height, f.width, 3)
                clips.append(engine.check_frames(i, frames))
            elif which == "segment":
                seg = clip.segment
                if seg.start_seconds < 0 or (seg.end_seconds and seg.end_seconds <= seg.start_seconds):
                    raise InvalidInput(
                        f"clip {i}: bad time range [{seg.start_seconds}, {seg.end_seconds}) seconds"
                    )
                clips.append((seg.data, seg.start_seconds, seg.end_seconds))
            else:
                raise InvalidInput(f"clip {i} has neither frames nor a video segment")
        vectors = await engine.encode_clips(clips)
        return encoder_pb2.EncodeVideosResponse(
            embeddings=vectors_to_proto(vectors), model_id=engine.runner.model_id
        )

    async def Info(self, request, context):
        engine = self.engine.get()
        r = engine.runner
        return encoder_pb2.InfoResponse(
            model_id=r.model_id,
            dimension=r.embed_dim,
            frames_per_clip=r.num_frames,
            max_text_tokens=r.max_tokens,
            image_size=r.image_size,
            device=r.device,
            dtype=r.dtype,
            temporal=r.temporal,
            max_batch_size=engine.batching.max_batch_size,
            max_queue_delay_ms=int(engine.batching.max_queue_delay_ms),
            architecture=r.architecture,
            crop=r.crop,
            max_text_chars=engine.limits.max_text_chars,
        )

"""The bad-input corpus: malformed requests to every RPC of every service of the running stack.

Each request must be answered with the right status code and a message that says what is wrong;
afterwards every service is still SERVING and nothing stored has changed (shard Stats, a Get of
the corpus clips with their vectors, the ingest queue and job records in Redis, the media store).

Requests the Python client cannot even build (a string field that is not UTF-8, bytes that are no
message at all) go through a generic call that sends raw bytes. grpc.aio alone would answer those
UNKNOWN ("Unexpected <class 'DecodeError'>"), before any service code runs; the shared status
interceptor parses requests itself so that they are INVALID_ARGUMENT like any other bad input.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image

from services.ingest.sources import OUTSIDE_ROOTS
from tests.media import make_video
from tests.system.stack import MAX_QUERY_VIDEO_BYTES, MAX_UPLOAD_BYTES, SystemStack
from vidsearch.common.v1 import common_pb2
from vidsearch.encoder.v1 import encoder_pb2
from vidsearch.gateway.v1 import gateway_pb2
from vidsearch.index.v1 import index_pb2
from vidsearch.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.slow

DIM = 64  # the tiny model's embedding size
MiB = 1024 * 1024
#: Latin-1 "café" and two bytes that never occur in UTF-8.
NOT_UTF8 = b"caf\xe9 \xff\xfe"


# ------------------------------------------------------------------------------------ malformed media


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def wire(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (string, bytes or message), encoded by hand."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def png_claiming(width: int, height: int) -> bytes:
    """A valid 100-byte PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def _jpeg(size: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@dataclass(frozen=True)
class Media:
    """Broken and hostile payloads, made once per session."""

    mp4: bytes
    truncated_mp4: bytes
    random_bytes: bytes
    bomb_png: bytes
    truncated_jpeg: bytes
    library: Path


@pytest.fixture(scope="module")
def media(system: SystemStack) -> Media:
    whole = make_video(system.library / "whole.mp4", seconds=4, fps=5, size=(64, 64)).read_bytes()
    jpeg = _jpeg()
    return Media(mp4=whole, truncated_mp4=whole[: len(whole) // 2], random_bytes=np.random.default_rng(7).bytes(50_000),
                 bomb_png=png_claiming(100_000, 100_000), truncated_jpeg=jpeg[: len(jpeg) // 2],
                 library=system.library)


# ------------------------------------------------------------------------------------------- the calls


class Caller:
    """Stubs of the four services plus raw-bytes calls, for one case."""

    def __init__(self, system: SystemStack, media: Media) -> None:
        self.system = system
        self.media = media
        self.gateway = system.gateway()
        self.encoder = system.encoder()
        self.index = system.index(0)
        self.ingest = system.ingest_api()
        self.known_clip = system.clip_ids[0]

    def _address(self, service: str) -> str:
        stack = self.system.stack
        return {"gateway": stack.gateway, "encoder": stack.encoder, "index": stack.shards[0],
                "ingest": stack.ingest}[service].address

    def raw(self, service: str, method: str, payload: bytes) -> Any:
        """A unary call with hand-made request bytes (``method`` is "/package.Service/Method")."""
        channel = self.system.channel(self._address(service))
        return channel.unary_unary(method, request_serializer=None, response_deserializer=None)(payload, timeout=30)

    def raw_stream_in(self, service: str, method: str, payloads: Iterable[bytes]) -> Any:
        channel = self.system.channel(self._address(service))
        return channel.stream_unary(method, request_serializer=None, response_deserializer=None)(
            iter(payloads), timeout=30)

    def raw_stream_out(self, service: str, method: str, payload: bytes) -> list:
        channel = self.system.channel(self._address(service))
        return list(channel.unary_stream(method, request_serializer=None, response_deserializer=None)(
            payload, timeout=30))


@dataclass(frozen=True)
class Case:
    name: str
    rpc: str  # "<service>.<Method>"
    send: Callable[[Caller], Any]
    code: str  # the expected status name; "OK" for requests that are answered, not refused
    message: str = ""  # part of the status details (case-insensitive)
    check: Callable[[Any], bool] | None = None  # for "OK": what the reply must say

    @property
    def service(self) -> str:
        return self.rpc.split(".")[0]


def search(**kw: Any) -> Callable[[Caller], Any]:
    kw.setdefault("top_k", 5)
    return lambda c: c.gateway.Search(gateway_pb2.SearchRequest(**kw), timeout=30)


def text(t: str, **kw: Any) -> Callable[[Caller], Any]:
    return search(text=gateway_pb2.TextQuery(text=t), **kw)


def by_video(messages: Callable[[Caller], list[gateway_pb2.SearchByVideoRequest]]) -> Callable[[Caller], Any]:
    return lambda c: c.gateway.SearchByVideo(iter(messages(c)), timeout=30)


def video_stream(data: bytes, chunk: int = 256 * 1024) -> list[gateway_pb2.SearchByVideoRequest]:
    head = [gateway_pb2.SearchByVideoRequest(search=gateway_pb2.SearchRequest(top_k=3))]
    return head + [gateway_pb2.SearchByVideoRequest(chunk=data[i:i + chunk]) for i in range(0, len(data), chunk)]


def vector(*values: float) -> common_pb2.Vector:
    return common_pb2.Vector(values=list(values) + [0.1] * (DIM - len(values)))


def clip(clip_id: str = "bad-input:000000000", video_id: str = "bad-input", start: float = 0.0, end: float = 1.0,
         vec: common_pb2.Vector | None = None, **kw: Any) -> common_pb2.ClipRecord:
    return common_pb2.ClipRecord(clip_id=clip_id, video_id=video_id, start_seconds=start, end_seconds=end,
                                 vector=vec or vector(1.0), **kw)


def upsert(*clips: common_pb2.ClipRecord, model: str | None = None) -> Callable[[Caller], Any]:
    def send(c: Caller) -> Any:
        for record in clips:
            record.model_id = model if model is not None else c.system.model_id
        return c.index.Upsert(index_pb2.UpsertRequest(clips=clips), timeout=30)

    return send


def shard_search(queries: list[common_pb2.Vector], top_k: int = 5, **kw: Any) -> Callable[[Caller], Any]:
    return lambda c: c.index.Search(index_pb2.SearchRequest(queries=queries, top_k=top_k, **kw), timeout=30)


def frames(count: int, height: int = 64, width: int = 64, extra: int = 0, rgb: bytes | None = None
           ) -> Callable[[Caller], Any]:
    data = rgb if rgb is not None else b"\0" * max(0, count * height * width * 3 + extra)
    raw = encoder_pb2.RawFrames(count=count, height=height, width=width, rgb=data)
    return lambda c: c.encoder.EncodeVideos(encoder_pb2.EncodeVideosRequest(
        clips=[encoder_pb2.VideoClip(frames=raw)]), timeout=30)


def segment(data: Callable[[Media], bytes], start: float = 0.0, end: float = 0.0) -> Callable[[Caller], Any]:
    return lambda c: c.encoder.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=[encoder_pb2.VideoClip(
        segment=encoder_pb2.VideoSegment(data=data(c.media), start_seconds=start, end_seconds=end))]), timeout=60)


def submit(uri: str | Callable[[Media], str] = "{library}/corpus-testsrc2.mp4", **kw: Any
           ) -> Callable[[Caller], Any]:
    def send(c: Caller) -> Any:
        target = uri(c.media) if callable(uri) else uri.format(library=c.media.library)
        return c.ingest.SubmitVideo(ingest_pb2.SubmitVideoRequest(uri=target, **kw), timeout=30)

    return send


def upload(header: ingest_pb2.UploadHeader | None, data: bytes = b"", chunk: int = 256 * 1024,
           extra: Iterable[ingest_pb2.UploadVideoRequest] = ()) -> Callable[[Caller], Any]:
    def messages() -> Iterator[ingest_pb2.UploadVideoRequest]:
        if header is not None:
            yield ingest_pb2.UploadVideoRequest(header=header)
        for i in range(0, len(data), chunk):
            yield ingest_pb2.UploadVideoRequest(chunk=data[i:i + chunk])
        yield from extra

    return lambda c: c.ingest.UploadVideo(messages(), timeout=60)


def job_call(method: str, job_id: str) -> Callable[[Caller], Any]:
    def send(c: Caller) -> Any:
        reply = getattr(c.ingest, method)(getattr(ingest_pb2, f"{method}Request")(job_id=job_id), timeout=30)
        return list(reply) if method == "WatchJob" else reply

    return send


META = ingest_pb2.VideoMetadata
SEG = ingest_pb2.SegmentOptions
HEADER = ingest_pb2.UploadHeader(filename="clip.mp4")
GW = "/vidsearch.gateway.v1.SearchService/"
ENC = "/vidsearch.encoder.v1.EncoderService/"
IDX = "/vidsearch.index.v1.IndexService/"
ING = "/vidsearch.ingest.v1.IngestService/"
INVALID, NOT_FOUND = "INVALID_ARGUMENT", "NOT_FOUND"
MALFORMED = "malformed request message"

CASES = [
    # ---------------------------------------------------------------- gateway.SearchService
    Case("no query", "gateway.Search", search(), INVALID, "query is empty"),
    Case("blank text", "gateway.Search", text(" \t\n "), INVALID, "text query is empty"),
    Case("1 MB text", "gateway.Search", text("가" * MiB), INVALID, "the limit is 1000"),
    Case("non-UTF-8 text", "gateway.Search",
         lambda c: c.raw("gateway", GW + "Search", wire(1, wire(1, NOT_UTF8))), INVALID, "bad UTF-8"),
    Case("random image bytes", "gateway.Search", lambda c: c.gateway.Search(gateway_pb2.SearchRequest(
        image=c.media.random_bytes, top_k=5), timeout=30), INVALID, "not a readable image"),
    Case("zero-byte image", "gateway.Search", search(image=b""), INVALID, "image query is empty"),
    Case("image bomb 100000x100000", "gateway.Search", lambda c: c.gateway.Search(gateway_pb2.SearchRequest(
        image=c.media.bomb_png, top_k=5), timeout=30), INVALID, "10000000000 pixels"),
    Case("truncated JPEG", "gateway.Search", lambda c: c.gateway.Search(gateway_pb2.SearchRequest(
        image=c.media.truncated_jpeg, top_k=5), timeout=30), INVALID, "truncated"),
    Case("random video bytes", "gateway.Search", lambda c: c.gateway.Search(gateway_pb2.SearchRequest(
        video=gateway_pb2.VideoQuery(data=c.media.random_bytes), top_k=5), timeout=30), INVALID, "clip 0"),
    Case("truncated MP4", "gateway.Search", lambda c: c.gateway.Search(gateway_pb2.SearchRequest(
        video=gateway_pb2.VideoQuery(data=c.media.truncated_mp4), top_k=5), timeout=30), INVALID, "clip 0"),
    Case("zero-byte video", "gateway.Search", search(video=gateway_pb2.VideoQuery(data=b"")), INVALID,
         "video query is empty"),
    Case("video range reversed", "gateway.Search", lambda c: c.gateway.Search(gateway_pb2.SearchRequest(
        video=gateway_pb2.VideoQuery(data=c.media.truncated_mp4, start_seconds=5, end_seconds=2), top_k=5),
        timeout=30), INVALID, "bad time range"),
    Case("video start NaN", "gateway.Search", lambda c: c.gateway.Search(gateway_pb2.SearchRequest(
        video=gateway_pb2.VideoQuery(data=c.media.mp4, start_seconds=math.nan), top_k=5),
        timeout=30), INVALID, "times must be finite"),
    Case("top_k negative", "gateway.Search", text("x", top_k=-1), INVALID, "top_k must be in 1..1000"),
    Case("top_k 1001", "gateway.Search", text("x", top_k=1001), INVALID, "top_k must be in 1..1000"),
    Case("top_k 2^31-1", "gateway.Search", text("x", top_k=2**31 - 1), INVALID, "top_k must be in 1..1000"),
    Case("unknown clip id", "gateway.Search", search(clip_id="never-ingested:000000000"), NOT_FOUND,
         "never-ingested"),
    Case("malformed clip id", "gateway.Search", search(clip_id="no-start-time"), INVALID, "malformed clip id"),
    Case("clip id path traversal", "gateway.Search", search(clip_id="../../../etc/passwd:000000000"), NOT_FOUND,
         "etc/passwd"),
    Case("filter NaN start", "gateway.Search", text("x", filter=common_pb2.SearchFilter(
        min_start_seconds=math.nan)), INVALID, "must be a finite number"),
    Case("filter range reversed", "gateway.Search", text("x", filter=common_pb2.SearchFilter(
        min_start_seconds=10, max_end_seconds=5)), INVALID, "before min_start"),
    Case("empty batch", "gateway.BatchSearch", lambda c: c.gateway.BatchSearch(
        gateway_pb2.BatchSearchRequest(), timeout=30), INVALID, "at least one request"),
    Case("batch of 65", "gateway.BatchSearch", lambda c: c.gateway.BatchSearch(gateway_pb2.BatchSearchRequest(
        requests=[gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="x"))] * 65), timeout=30),
        INVALID, "at most 64"),
    Case("one bad request in a batch", "gateway.BatchSearch", lambda c: c.gateway.BatchSearch(
        gateway_pb2.BatchSearchRequest(requests=[gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="x")),
                                                 gateway_pb2.SearchRequest()]), timeout=30),
        INVALID, "request 1: the query is empty"),
    Case("non-UTF-8 text in a batch", "gateway.BatchSearch",
         lambda c: c.raw("gateway", GW + "BatchSearch", wire(1, wire(1, wire(1, NOT_UTF8)))), INVALID, "bad UTF-8"),
    Case("chunk before settings", "gateway.SearchByVideo",
         by_video(lambda c: [gateway_pb2.SearchByVideoRequest(chunk=b"x")]), INVALID, "before the video chunks"),
    Case("settings twice", "gateway.SearchByVideo", by_video(lambda c: [
        gateway_pb2.SearchByVideoRequest(search=gateway_pb2.SearchRequest())] * 2), INVALID, "once, first"),
    Case("empty stream", "gateway.SearchByVideo", by_video(lambda c: []), INVALID, "no search settings"),
    Case("oversized video stream", "gateway.SearchByVideo",
         by_video(lambda c: video_stream(b"\0" * (MAX_QUERY_VIDEO_BYTES + 1))), INVALID,
         f"exceeds {MAX_QUERY_VIDEO_BYTES} bytes"),
    Case("random bytes streamed", "gateway.SearchByVideo", by_video(lambda c: video_stream(c.media.random_bytes)),
         INVALID, "clip 0"),
    Case("query in the settings", "gateway.SearchByVideo", by_video(lambda c: [gateway_pb2.SearchByVideoRequest(
        search=gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="x")))]), INVALID, "leave the query empty"),
    Case("garbage message in the stream", "gateway.SearchByVideo",
         lambda c: c.raw_stream_in("gateway", GW + "SearchByVideo", [b"\xff\xff\xff\xff"]), INVALID, MALFORMED),
    Case("thumbnail empty id", "gateway.GetThumbnail", lambda c: c.gateway.GetThumbnail(
        gateway_pb2.GetThumbnailRequest(), timeout=30), INVALID, "clip_id is empty"),
    Case("thumbnail unknown id", "gateway.GetThumbnail", lambda c: c.gateway.GetThumbnail(
        gateway_pb2.GetThumbnailRequest(clip_id="never-ingested:000000000"), timeout=30), NOT_FOUND, "no clip"),
    Case("thumbnail malformed id", "gateway.GetThumbnail", lambda c: c.gateway.GetThumbnail(
        gateway_pb2.GetThumbnailRequest(clip_id="../thumbs"), timeout=30), INVALID, "malformed clip id"),
    Case("clip unknown id", "gateway.GetClip", lambda c: list(c.gateway.GetClip(
        gateway_pb2.GetClipRequest(clip_id="never-ingested:000000000"), timeout=30)), NOT_FOUND, "no clip"),
    Case("clip malformed id", "gateway.GetClip", lambda c: list(c.gateway.GetClip(
        gateway_pb2.GetClipRequest(clip_id=":000"), timeout=30)), INVALID, "malformed clip id"),
    Case("clip non-UTF-8 id", "gateway.GetClip",
         lambda c: c.raw_stream_out("gateway", GW + "GetClip", wire(1, NOT_UTF8)), INVALID, "bad UTF-8"),
    # ---------------------------------------------------------------- encoder.EncoderService
    Case("no texts", "encoder.EncodeText", lambda c: c.encoder.EncodeText(
        encoder_pb2.EncodeTextRequest(), timeout=30), INVALID, "no texts"),
    Case("blank text", "encoder.EncodeText", lambda c: c.encoder.EncodeText(
        encoder_pb2.EncodeTextRequest(texts=["ok", "   "]), timeout=30), INVALID, "text 1 is empty"),
    Case("1 MB text", "encoder.EncodeText", lambda c: c.encoder.EncodeText(
        encoder_pb2.EncodeTextRequest(texts=["a" * MiB]), timeout=30), INVALID, "1048576 characters"),
    Case("300 texts", "encoder.EncodeText", lambda c: c.encoder.EncodeText(
        encoder_pb2.EncodeTextRequest(texts=["a"] * 300), timeout=30), INVALID, "at most 256"),
    Case("non-UTF-8 text", "encoder.EncodeText",
         lambda c: c.raw("encoder", ENC + "EncodeText", wire(1, NOT_UTF8)), INVALID, "bad UTF-8"),
    Case("non-UTF-8 language", "encoder.EncodeText",
         lambda c: c.raw("encoder", ENC + "EncodeText", wire(1, b"ok") + wire(2, NOT_UTF8)), INVALID, "bad UTF-8"),
    Case("no images", "encoder.EncodeImages", lambda c: c.encoder.EncodeImages(
        encoder_pb2.EncodeImagesRequest(), timeout=30), INVALID, "no images"),
    Case("random image bytes", "encoder.EncodeImages", lambda c: c.encoder.EncodeImages(
        encoder_pb2.EncodeImagesRequest(images=[c.media.random_bytes]), timeout=30), INVALID, "image 0"),
    Case("zero-byte image", "encoder.EncodeImages", lambda c: c.encoder.EncodeImages(
        encoder_pb2.EncodeImagesRequest(images=[_jpeg(16), b""]), timeout=30), INVALID, "image 1: image is empty"),
    Case("image bomb 100000x100000", "encoder.EncodeImages", lambda c: c.encoder.EncodeImages(
        encoder_pb2.EncodeImagesRequest(images=[c.media.bomb_png]), timeout=30), INVALID, "10000000000 pixels"),
    Case("image of 64 megapixels", "encoder.EncodeImages", lambda c: c.encoder.EncodeImages(
        encoder_pb2.EncodeImagesRequest(images=[png_claiming(8000, 8000)]), timeout=30), INVALID,
        "8000x8000 (64000000 pixels), over the limit"),
    Case("image bomb 1x2^31", "encoder.EncodeImages", lambda c: c.encoder.EncodeImages(
        encoder_pb2.EncodeImagesRequest(images=[png_claiming(1, 2**31 - 1)]), timeout=30), INVALID, "image 0"),
    Case("truncated JPEG", "encoder.EncodeImages", lambda c: c.encoder.EncodeImages(
        encoder_pb2.EncodeImagesRequest(images=[c.media.truncated_jpeg]), timeout=30), INVALID, "truncated"),
    Case("33 MiB image", "encoder.EncodeImages", lambda c: c.encoder.EncodeImages(
        encoder_pb2.EncodeImagesRequest(images=[b"\0" * (33 * MiB)]), timeout=60), INVALID, "the limit is"),
    Case("65 MiB message", "encoder.EncodeImages", lambda c: c.encoder.EncodeImages(
        encoder_pb2.EncodeImagesRequest(images=[b"\0" * (65 * MiB)]), timeout=60),
        "RESOURCE_EXHAUSTED", "larger than max"),
    Case("no clips", "encoder.EncodeVideos", lambda c: c.encoder.EncodeVideos(
        encoder_pb2.EncodeVideosRequest(), timeout=30), INVALID, "no clips"),
    Case("random video bytes", "encoder.EncodeVideos", segment(lambda m: m.random_bytes), INVALID, "clip 0"),
    Case("truncated MP4", "encoder.EncodeVideos", segment(lambda m: m.truncated_mp4), INVALID, "clip 0"),
    Case("zero-byte video", "encoder.EncodeVideos", segment(lambda m: b""), INVALID, "clip 0"),
    Case("reversed range", "encoder.EncodeVideos", segment(lambda m: m.truncated_mp4, 5, 2), INVALID,
         "bad time range"),
    Case("NaN start", "encoder.EncodeVideos", segment(lambda m: m.mp4, math.nan), INVALID,
         "times must be finite"),
    Case("start past the end", "encoder.EncodeVideos", segment(lambda m: m.mp4, 1e9), INVALID,
         "is not before the video's end"),
    Case("13 frames", "encoder.EncodeVideos", frames(13), INVALID, "1..12"),
    Case("frames 32x32", "encoder.EncodeVideos", frames(2, 32, 32), INVALID, "64x64"),
    Case("rgb length mismatch", "encoder.EncodeVideos", frames(2, extra=5), INVALID, "count*height*width*3"),
    Case("negative frame count", "encoder.EncodeVideos", frames(-1, rgb=b""), INVALID, "count*height*width*3"),
    Case("absurd frame dimensions", "encoder.EncodeVideos", frames(2**31 - 1, 2**31 - 1, 2**31 - 1, rgb=b"\0" * 12),
         INVALID, "count*height*width*3"),
    Case("neither frames nor segment", "encoder.EncodeVideos", lambda c: c.encoder.EncodeVideos(
        encoder_pb2.EncodeVideosRequest(clips=[encoder_pb2.VideoClip()]), timeout=30), INVALID, "neither"),
    Case("garbage request", "encoder.Info", lambda c: c.raw("encoder", ENC + "Info", b"\xff\xff\xff"),
         INVALID, MALFORMED),
    # ---------------------------------------------------------------- index.IndexService
    Case("empty upsert", "index.Upsert", lambda c: c.index.Upsert(index_pb2.UpsertRequest(), timeout=30),
         INVALID, "at least one clip"),
    Case("wrong dimension", "index.Upsert", upsert(clip(vec=common_pb2.Vector(values=[0.5] * 7))), INVALID,
         "dimension 7"),
    Case("NaN vector", "index.Upsert", upsert(clip(vec=vector(math.nan))), INVALID, "NaN"),
    Case("infinite vector", "index.Upsert", upsert(clip(vec=vector(math.inf))), INVALID, "Inf"),
    Case("zero vector", "index.Upsert", upsert(clip(vec=common_pb2.Vector(values=[0.0] * DIM))), INVALID,
         "all zeros"),
    Case("duplicate ids in one batch", "index.Upsert", upsert(clip(), clip()), INVALID, "duplicate clip id"),
    Case("empty clip id", "index.Upsert", upsert(clip(clip_id="")), INVALID, "clip_id"),
    Case("empty video id", "index.Upsert", upsert(clip(video_id="")), INVALID, "empty video_id"),
    Case("NaN start", "index.Upsert", upsert(clip(start=math.nan)), INVALID, "finite"),
    Case("ends before it starts", "index.Upsert", upsert(clip(start=5, end=1)), INVALID, "before it starts"),
    Case("other model", "index.Upsert", upsert(clip(), model="some-other-model"), "FAILED_PRECONDITION",
         "some-other-model"),
    Case("10001 clips", "index.Upsert", upsert(*[clip(clip_id=f"bad-input:{i:09d}") for i in range(10_001)]),
         INVALID, "at most 10000"),
    Case("non-UTF-8 clip id", "index.Upsert",
         lambda c: c.raw("index", IDX + "Upsert", wire(1, wire(1, NOT_UTF8))), INVALID, "bad UTF-8"),
    Case("empty delete", "index.Delete", lambda c: c.index.Delete(index_pb2.DeleteRequest(), timeout=30),
         INVALID, "clip_ids or video_ids"),
    Case("empty id in delete", "index.Delete", lambda c: c.index.Delete(
        index_pb2.DeleteRequest(video_ids=[""]), timeout=30), INVALID, "must not be empty"),
    Case("duplicate unknown ids in delete", "index.Delete", lambda c: c.index.Delete(index_pb2.DeleteRequest(
        clip_ids=["never-ingested:000000000"] * 2), timeout=30), "OK", check=lambda r: r.deleted == 0),
    Case("writer of 129 characters", "index.Upsert", lambda c: c.index.Upsert(index_pb2.UpsertRequest(
        clips=[clip()], writer="j" * 129), timeout=30), INVALID, "at most 128"),
    Case("empty fenced writer", "index.Delete", lambda c: c.index.Delete(index_pb2.DeleteRequest(
        video_ids=["never-ingested"], fence_writers=[""]), timeout=30), INVALID, "fence_writers"),
    Case("1001 fenced writers", "index.Delete", lambda c: c.index.Delete(index_pb2.DeleteRequest(
        video_ids=["never-ingested"], fence_writers=[f"job-{i}" for i in range(1001)]), timeout=30), INVALID,
         "at most 1000"),
    Case("no queries", "index.Search", shard_search([]), INVALID, "at least one query"),
    Case("top_k 0", "index.Search", shard_search([vector(1.0)], top_k=0), INVALID, "top_k"),
    Case("top_k 1001", "index.Search", shard_search([vector(1.0)], top_k=1001), INVALID, "top_k"),
    Case("NaN query", "index.Search", shard_search([vector(math.nan)]), INVALID, "NaN"),
    Case("query dimension", "index.Search", shard_search([common_pb2.Vector(values=[0.5] * 3)]), INVALID,
         "dimension"),
    Case("ragged queries", "index.Search", shard_search([vector(1.0), common_pb2.Vector(values=[1.0])]),
         INVALID, "different lengths"),
    Case("negative search_k", "index.Search", shard_search([vector(1.0)], search_k=-1), INVALID, "search_k"),
    Case("1025 queries", "index.Search", shard_search([vector(1.0)] * 1025), INVALID, "at most 1024"),
    Case("filter NaN end", "index.Search", shard_search([vector(1.0)], filter=common_pb2.SearchFilter(
        max_end_seconds=math.nan)), INVALID, "must be a finite number"),
    Case("10001 ids", "index.Get", lambda c: c.index.Get(index_pb2.GetRequest(
        clip_ids=[f"x:{i:09d}" for i in range(10_001)]), timeout=30), INVALID, "at most 10000"),
    Case("unknown ids", "index.Get", lambda c: c.index.Get(index_pb2.GetRequest(
        clip_ids=[c.known_clip, "never-ingested:000000000", "../../etc/passwd"]), timeout=30), "OK",
        check=lambda r: list(r.missing_ids) == ["never-ingested:000000000", "../../etc/passwd"]),
    Case("duplicate ids", "index.Get", lambda c: c.index.Get(index_pb2.GetRequest(
        clip_ids=[c.known_clip] * 3), timeout=30), "OK",
        check=lambda r: len(r.clips) == 1 and not r.missing_ids),
    Case("non-UTF-8 id", "index.Get", lambda c: c.raw("index", IDX + "Get", wire(1, NOT_UTF8)), INVALID,
         "bad UTF-8"),
    Case("garbage request", "index.Seal", lambda c: c.raw("index", IDX + "Seal", b"\x08"), INVALID, MALFORMED),
    Case("garbage request", "index.Compact", lambda c: c.raw("index", IDX + "Compact", b"\x0a\x05ab"), INVALID,
         MALFORMED),
    Case("garbage request", "index.Stats", lambda c: c.raw("index", IDX + "Stats", b"\xff\xff\xff"), INVALID,
         MALFORMED),
    Case("page_size 10001", "index.Scan", lambda c: list(c.index.Scan(index_pb2.ScanRequest(page_size=10_001),
                                                                     timeout=30)), INVALID, "page_size"),
    Case("negative limit", "index.Scan", lambda c: list(c.index.Scan(index_pb2.ScanRequest(limit=-1), timeout=30)),
         INVALID, "limit"),
    Case("empty video id", "index.Scan", lambda c: list(c.index.Scan(index_pb2.ScanRequest(video_ids=[""]),
                                                                    timeout=30)), INVALID, "must not be empty"),
    Case("501 video ids", "index.Scan", lambda c: list(c.index.Scan(index_pb2.ScanRequest(
        video_ids=[f"v{i}" for i in range(501)]), timeout=30)), INVALID, "at most 500"),
    Case("past the last clip", "index.Scan", lambda c: list(c.index.Scan(index_pb2.ScanRequest(
        after_clip_id="\U0010ffff"), timeout=30)), "OK", check=lambda r: r == []),
    Case("non-UTF-8 resume id", "index.Scan", lambda c: c.raw_stream_out("index", IDX + "Scan", wire(1, NOT_UTF8)),
         INVALID, "bad UTF-8"),
    Case("bounds out of order", "index.Digest", lambda c: c.index.Digest(index_pb2.DigestRequest(
        bounds=["b", "a"]), timeout=30), INVALID, "strictly increasing"),
    Case("duplicate bound", "index.Digest", lambda c: c.index.Digest(index_pb2.DigestRequest(
        bounds=["a", "a"]), timeout=30), INVALID, "strictly increasing"),
    Case("empty bound", "index.Digest", lambda c: c.index.Digest(index_pb2.DigestRequest(
        bounds=["", "a"]), timeout=30), INVALID, "must not be empty"),
    Case("10001 bounds", "index.Digest", lambda c: c.index.Digest(index_pb2.DigestRequest(
        bounds=[f"x:{i:09d}" for i in range(10_001)]), timeout=30), INVALID, "at most 10000"),
    Case("non-UTF-8 bound", "index.Digest", lambda c: c.raw("index", IDX + "Digest", wire(1, NOT_UTF8)), INVALID,
         "bad UTF-8"),
    Case("no bounds", "index.Digest", lambda c: c.index.Digest(index_pb2.DigestRequest(), timeout=30), "OK",
         check=lambda r: len(r.ranges) == 1 and r.ranges[0].clips > 0 and len(r.ranges[0].sha256) == 32),
    # ---------------------------------------------------------------- ingest.IngestService
    Case("empty uri", "ingest.SubmitVideo", submit(""), INVALID, "uri must not be empty"),
    Case("path traversal", "ingest.SubmitVideo", submit("{library}/../../../etc/passwd"), INVALID, "'..'"),
    Case("encoded path traversal", "ingest.SubmitVideo", submit("file://{library}/%2e%2e/%2e%2e/etc/passwd"),
         INVALID, "'..'"),
    Case("outside the roots", "ingest.SubmitVideo", submit("/etc/passwd"), INVALID, OUTSIDE_ROOTS),
    Case("http scheme", "ingest.SubmitVideo", submit("http://example.com/video.mp4"), INVALID,
         "only absolute paths and file://"),
    Case("s3 scheme", "ingest.SubmitVideo", submit("s3://bucket/video.mp4"), INVALID, "scheme 's3'"),
    Case("relative path", "ingest.SubmitVideo", submit("library/video.mp4"), INVALID, "a relative path"),
    Case("file URI of another host", "ingest.SubmitVideo", submit("file://attacker.example/{library}/v.mp4"),
         INVALID, "names host"),
    Case("NUL in uri", "ingest.SubmitVideo", submit("{library}/v.mp4\0.txt"), INVALID, "NUL"),
    Case("missing file", "ingest.SubmitVideo", submit("{library}/missing.mp4"), NOT_FOUND, "no such file"),
    Case("a directory", "ingest.SubmitVideo", submit("{library}"), INVALID, "not a regular file"),
    Case("video id traversal", "ingest.SubmitVideo", submit(video_id="../../x"), INVALID, "video_id"),
    Case("video id of 129 chars", "ingest.SubmitVideo", submit(video_id="v" * 129), INVALID, "1-128 characters"),
    Case("window NaN", "ingest.SubmitVideo", submit(segment=SEG(window_seconds=math.nan)), INVALID,
         "window_seconds"),
    Case("window 0.1 s", "ingest.SubmitVideo", submit(segment=SEG(window_seconds=0.1)), INVALID, "window_seconds"),
    Case("overlap >= window", "ingest.SubmitVideo", submit(segment=SEG(window_seconds=2, overlap_seconds=2)),
         INVALID, "overlap_seconds"),
    Case("unknown segment mode", "ingest.SubmitVideo", submit(segment=SEG(mode=7)), INVALID,
         "unknown segment mode"),
    Case("air date not a date", "ingest.SubmitVideo", submit(metadata=META(air_date="2024-02-30")), INVALID,
         "air_date"),
    Case("reserved metadata key", "ingest.SubmitVideo", submit(metadata=META(extra={"source_uri": "/etc"})),
         INVALID, "reserved"),
    Case("1 MB title", "ingest.SubmitVideo", submit(metadata=META(title="t" * MiB)), INVALID, "title is"),
    Case("101 tags", "ingest.SubmitVideo", submit(metadata=META(tags=[f"t{i}" for i in range(101)])), INVALID,
         "at most 100 tags"),
    Case("non-UTF-8 uri", "ingest.SubmitVideo", lambda c: c.raw("ingest", ING + "SubmitVideo", wire(1, NOT_UTF8)),
         INVALID, "bad UTF-8"),
    Case("chunk first", "ingest.UploadVideo", upload(None, b"x"), INVALID, "must be a header"),
    Case("empty stream", "ingest.UploadVideo", upload(None), INVALID, "must be a header"),
    Case("zero-byte upload", "ingest.UploadVideo", upload(HEADER), INVALID, "upload is empty"),
    Case("oversized upload", "ingest.UploadVideo", upload(HEADER, b"\0" * (MAX_UPLOAD_BYTES + 1), chunk=MiB),
         INVALID, "larger than the limit"),
    Case("oversized declared size", "ingest.UploadVideo",
         upload(ingest_pb2.UploadHeader(filename="a.mp4", size_bytes=2**62), b"x"), INVALID, "larger than"),
    Case("chunk over 1 MiB", "ingest.UploadVideo", upload(HEADER, b"\0" * (MiB + 1), chunk=2 * MiB), INVALID,
         "at most 1048576 bytes"),
    Case("second header", "ingest.UploadVideo",
         upload(HEADER, b"x", extra=[ingest_pb2.UploadVideoRequest(header=HEADER)]), INVALID, "only the first"),
    Case("video id traversal", "ingest.UploadVideo",
         upload(ingest_pb2.UploadHeader(filename="a.mp4", video_id="../uploads"), b"x"), INVALID, "video_id"),
    Case("non-UTF-8 filename", "ingest.UploadVideo",
         lambda c: c.raw_stream_in("ingest", ING + "UploadVideo", [wire(1, wire(1, NOT_UTF8))]), INVALID,
         "bad UTF-8"),
    Case("empty job id", "ingest.GetJob", job_call("GetJob", ""), INVALID, "job_id"),
    Case("unknown job", "ingest.GetJob", job_call("GetJob", "no-such-job"), NOT_FOUND, "no-such-job"),
    Case("job id traversal", "ingest.GetJob", job_call("GetJob", "../../etc/passwd"), NOT_FOUND, "etc/passwd"),
    Case("empty job id", "ingest.WatchJob", job_call("WatchJob", ""), INVALID, "job_id"),
    Case("unknown job", "ingest.WatchJob", job_call("WatchJob", "no-such-job"), NOT_FOUND, "no-such-job"),
    Case("empty job id", "ingest.CancelJob", job_call("CancelJob", ""), INVALID, "job_id"),
    Case("unknown job", "ingest.CancelJob", job_call("CancelJob", "no-such-job"), NOT_FOUND, "no-such-job"),
    Case("empty video id", "ingest.DeleteVideo", lambda c: c.ingest.DeleteVideo(
        ingest_pb2.DeleteVideoRequest(), timeout=30), INVALID, "video_id"),
    Case("video id traversal", "ingest.DeleteVideo", lambda c: c.ingest.DeleteVideo(
        ingest_pb2.DeleteVideoRequest(video_id="../thumbs"), timeout=30), INVALID, "video_id"),
    Case("unknown video", "ingest.DeleteVideo", lambda c: c.ingest.DeleteVideo(
        ingest_pb2.DeleteVideoRequest(video_id="never-ingested"), timeout=30), "OK",
        check=lambda r: r.clips_deleted == 0),
]


# ------------------------------------------------------------------------------------------ the tests


def stored_state(system: SystemStack) -> dict[str, object]:
    """What must not change: shard counts, the corpus clips with their vectors, jobs and media."""
    state: dict[str, object] = {}
    for i in range(len(system.stack.shards)):
        s = system.index(i).Stats(index_pb2.StatsRequest(), timeout=10)
        state[f"shard-{i}"] = (s.records, s.live, s.tombstoned, s.fresh, s.segments, s.bytes_on_disk, s.model_id)
    for video_id, clip_ids in system.videos.items():
        got = system.index(system.shard_of(video_id)).Get(
            index_pb2.GetRequest(clip_ids=clip_ids, include_vectors=True), timeout=10)
        state[video_id] = got.SerializeToString(deterministic=True)
    redis = system.redis()
    state["jobs"] = sorted(redis.scan_iter("vidsearch:job:*", count=1000))
    state["queue"] = (redis.xlen("vidsearch:ingest:jobs"), redis.zcard("vidsearch:ingest:delayed"),
                      redis.xlen("vidsearch:ingest:dead"))
    root = system.stack.media_root
    state["media"] = sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())
    return state


def test_the_corpus_covers_every_rpc_of_every_service() -> None:
    from vidsearch.encoder.v1 import encoder_pb2 as enc
    from vidsearch.gateway.v1 import gateway_pb2 as gw
    from vidsearch.index.v1 import index_pb2 as idx
    from vidsearch.ingest.v1 import ingest_pb2 as ing

    rpcs = {f"{name}.{m.name}" for name, module in (("gateway", gw), ("encoder", enc), ("index", idx),
                                                    ("ingest", ing))
            for service in module.DESCRIPTOR.services_by_name.values() for m in service.methods}
    assert {c.rpc for c in CASES} == rpcs
    assert len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.rpc}: {c.name}")
def test_bad_input_gets_a_clear_status_and_changes_nothing(system: SystemStack, media: Media, case: Case) -> None:
    caller = Caller(system, media)
    before = stored_state(system)
    if case.code == "OK":
        reply = case.send(caller)
        assert case.check is not None and case.check(reply), reply
    else:
        with pytest.raises(grpc.RpcError) as err:
            case.send(caller)
        details = err.value.details() or ""
        assert err.value.code().name == case.code, details
        assert case.message.lower() in details.lower(), details
        assert "internal error" not in details and "Unexpected" not in details, details
    assert stored_state(system) == before
    unhealthy = {name: status for name, status in system.serving().items() if status != 1}
    assert not unhealthy, f"not SERVING after the request: {unhealthy}"

"""The HTTP/JSON API (``/api/v1``): each route validates its input (a search's query string in
``search_query``), makes one gRPC call with the caller's key and a deadline, and turns the reply into
JSON. Failures are left to ``errors``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

import grpc
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from google.protobuf.json_format import MessageToDict
from pydantic_core import to_json

from services.common.clip_ids import VIDEO_ID, validate_clip_id
from services.common.errors import InvalidInput
from services.web import search_query
from services.web.clips import ClipCache, byte_range
from services.web.errors import HTTP_STATUS, error_body
from services.web.exports import to_csv, to_edl
from services.web.search_query import MAX_K, SearchParams, SearchQuery, parse_date, split_list
from services.web.security import require
from vidsearch.gateway.v1 import gateway_pb2
from vidsearch.ingest.v1 import ingest_pb2

router = APIRouter(prefix="/api/v1")
CHUNK = 1 << 20
SNIFF_BYTES = 4096


class SearchJSONResponse(JSONResponse):
    """JSON encoded by pydantic-core (FastAPI's own encoder, in Rust): a page of hits in a third of the time
    ``json.dumps`` takes, the same bytes. A NaN or infinite score is written as null, which every JSON
    parser reads (pydantic-core's default, the bare ``NaN``, is not JSON)."""

    def render(self, content: Any) -> bytes:
        return to_json(content, inf_nan_mode="null")


@functools.lru_cache(maxsize=1 << 14)
def clip_path(clip_id: str) -> str:
    """``/api/v1/clips/<id>``, the id quoted; cached, as the same clips come back search after search."""
    return f"/api/v1/clips/{quote(clip_id, safe='')}"


def hit_json(h: gateway_pb2.SearchHit) -> dict[str, Any]:
    meta = dict(h.metadata)
    path = clip_path(h.clip_id)
    return {
        "clip_id": h.clip_id, "video_id": h.video_id, "score": round(float(h.score), 6),
        "start_seconds": h.start_seconds, "end_seconds": h.end_seconds, "start_timecode": h.start_timecode,
        "source_timecode": h.source_timecode, "source_end_timecode": h.source_end_timecode,
        "frame_rate": h.frame_rate, "caption": h.caption, "tags": list(h.tags),
        "title": meta.get("title", ""), "programme": meta.get("programme", ""), "air_date": meta.get("air_date", ""),
        "metadata": {k: v for k, v in meta.items() if k != "source_uri"}, "shard": h.shard,
        "thumbnail_url": f"{path}/thumbnail" if h.thumbnail_ref else "", "video_url": f"{path}/video",
    }


def result_json(reply: gateway_pb2.SearchResponse, params: SearchParams) -> dict[str, Any]:
    t = reply.timings
    return {"hits": params.keep([hit_json(h) for h in reply.hits]), "model_id": reply.model_id,
            "partial": reply.partial, "failed_shards": list(reply.failed_shards),
            "timings": {"encode_ms": t.encode_ms, "search_ms": t.search_ms, "total_ms": t.total_ms,
                        "cache_hit": t.cache_hit}}


def _state(request: Request):
    return request.app.state


async def _text_search(request: Request, query: SearchQuery) -> dict[str, Any]:
    params = query.params()
    q, like = query.q, query.like
    if bool(q.strip()) == bool(like):
        raise InvalidInput("give exactly one of q (a sentence) or like (a clip id)")
    if like:
        what: dict[str, Any] = {"clip_id": validate_clip_id(like)}
    else:
        what = {"text": gateway_pb2.TextQuery(text=q.strip(), language=query.lang)}
    st = _state(request)
    md = st.keys.metadata(request.headers)
    reply = await st.backends.gateway.Search(params.request(**what), metadata=md,
                                            timeout=st.settings.search_timeout_s)
    return result_json(reply, params)


@router.get("/search", summary="Search by text or by an indexed clip (more like this)",
            response_class=SearchJSONResponse, openapi_extra=search_query.OPENAPI)
async def search(request: Request) -> SearchJSONResponse:
    # Plain JSON types already: a response object skips FastAPI's per-field re-encoding of the result.
    return SearchJSONResponse(await _text_search(request, SearchQuery.of(request)))


@router.post("/search", summary="Search with an image or a video clip (multipart field 'file')",
             response_class=SearchJSONResponse, openapi_extra=search_query.OPENAPI_FILTERS)
async def search_by_file(
    request: Request, file: Annotated[UploadFile, File()],
    start: Annotated[float, Form(ge=0)] = 0.0, end: Annotated[float, Form(ge=0)] = 0.0,
) -> SearchJSONResponse:
    params = SearchQuery.of(request).params()
    st = _state(request)
    md = st.keys.metadata(request.headers)
    data = await file.read()
    if not data:
        raise InvalidInput("the file is empty")
    kind = require(data[:SNIFF_BYTES], ("image", "video"))
    timeout = st.settings.search_timeout_s
    if kind.kind == "image":
        reply = await st.backends.gateway.Search(params.request(image=data), metadata=md, timeout=timeout)
        return SearchJSONResponse(result_json(reply, params))

    async def stream() -> AsyncIterator[gateway_pb2.SearchByVideoRequest]:
        yield gateway_pb2.SearchByVideoRequest(search=params.request(), start_seconds=start, end_seconds=end)
        for i in range(0, len(data), CHUNK):
            yield gateway_pb2.SearchByVideoRequest(chunk=data[i:i + CHUNK])

    reply = await st.backends.gateway.SearchByVideo(stream(), metadata=md, timeout=timeout)
    return SearchJSONResponse(result_json(reply.result, params))


def _export_title(query: SearchQuery) -> str:
    return f"vidsearch: {query.q.strip() or 'more like ' + query.like}"


@router.get("/search.csv", summary="A text or clip search as CSV", response_class=PlainTextResponse,
            openapi_extra=search_query.OPENAPI)
async def search_csv(request: Request) -> Response:
    result = await _text_search(request, SearchQuery.of(request))
    return Response("\ufeff" + to_csv(result["hits"]), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="vidsearch.csv"'})


@router.get("/search.edl", summary="A text or clip search as a CMX3600 EDL", response_class=PlainTextResponse,
            openapi_extra=search_query.OPENAPI)
async def search_edl(request: Request) -> Response:
    query = SearchQuery.of(request)
    result = await _text_search(request, query)
    return Response(to_edl(result["hits"], _export_title(query)), media_type="text/plain; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="vidsearch.edl"'})


@router.get("/clips/{clip_id}/thumbnail", summary="A clip's thumbnail JPEG",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
async def thumbnail(request: Request, clip_id: str) -> Response:
    st = _state(request)
    md = st.keys.metadata(request.headers)
    reply = await st.backends.gateway.GetThumbnail(
        gateway_pb2.GetThumbnailRequest(clip_id=validate_clip_id(clip_id)), metadata=md, timeout=10)
    return Response(reply.image, media_type=reply.content_type or "image/jpeg",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.get("/clips/{clip_id}/video", summary="A clip's range of its source as MP4 (HTTP Range supported)",
            response_class=Response, responses={200: {"content": {"video/mp4": {}}}, 206: {}, 416: {}})
async def clip_video(request: Request, clip_id: str) -> Response:
    st = _state(request)
    md = st.keys.metadata(request.headers)
    cache: ClipCache = st.clips
    clip = await cache.get(validate_clip_id(clip_id), lambda: st.backends.gateway.GetClip(
        gateway_pb2.GetClipRequest(clip_id=clip_id), metadata=md, timeout=60))
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600",
               "X-Clip-Start-Seconds": f"{clip.start_seconds:.3f}", "X-Clip-End-Seconds": f"{clip.end_seconds:.3f}"}
    size = len(clip.data)
    wanted = byte_range(request.headers.get("range"), size)
    if wanted is None:
        return Response(clip.data, media_type=clip.content_type, headers=headers)
    first, last = wanted
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Response(clip.data[first:last + 1], status_code=206, media_type=clip.content_type, headers=headers)


def job_json(job: ingest_pb2.Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id, "video_id": job.video_id,
        "state": ingest_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_"),
        "stage": ingest_pb2.JobStage.Name(job.stage).removeprefix("JOB_STAGE_"),
        "clips_done": job.clips_done, "clips_total": job.clips_total, "error": job.error,
        "attempts": job.attempts, "video_seconds": job.video_seconds,
        "created_at": MessageToDict(job.created_at) if job.HasField("created_at") else None,
        "updated_at": MessageToDict(job.updated_at) if job.HasField("updated_at") else None,
    }


@router.post("/videos", status_code=202, summary="Upload a video (the raw file as the body) and queue its ingest",
             openapi_extra={"requestBody": {"content": {"application/octet-stream": {
                 "schema": {"type": "string", "format": "binary"}}}, "required": True}})
async def upload_video(
    request: Request,
    filename: Annotated[str, Query(min_length=1, max_length=255)],
    title: Annotated[str, Query(max_length=500)] = "",
    programme: Annotated[str, Query(max_length=500)] = "",
    air_date: Annotated[str, Query(max_length=10)] = "",
    tags: Annotated[str, Query(max_length=2000)] = "",
    video_id: Annotated[str, Query(max_length=128)] = "",
    window: Annotated[float, Query(ge=0, le=600, description="clip length in seconds; 0: the service's")] = 0.0,
    shots: Annotated[bool, Query(description="cut at detected shot boundaries")] = False,
) -> dict[str, Any]:
    st = _state(request)
    md = st.keys.metadata(request.headers, need="write")
    ingest = st.backends.ingest
    if video_id and not VIDEO_ID.fullmatch(video_id):
        raise InvalidInput(f"video_id {video_id!r} must be 1-128 letters, digits and '._:-'")
    body = request.stream().__aiter__()
    head = b""
    async for part in body:
        head += part
        if len(head) >= SNIFF_BYTES:
            break
    if not head:
        raise InvalidInput("the upload is empty (0 bytes)")
    require(head, ("video",))
    declared = request.headers.get("content-length", "")
    header = ingest_pb2.UploadHeader(
        filename=filename, video_id=video_id, size_bytes=int(declared) if declared.isdigit() else 0,
        metadata=ingest_pb2.VideoMetadata(title=title, programme=programme, air_date=parse_date("air_date", air_date),
                                          tags=list(split_list(tags))),
        segment=ingest_pb2.SegmentOptions(window_seconds=window, mode=ingest_pb2.SEGMENT_MODE_SHOTS if shots
                                          else ingest_pb2.SEGMENT_MODE_UNSPECIFIED))

    async def stream() -> AsyncIterator[ingest_pb2.UploadVideoRequest]:
        yield ingest_pb2.UploadVideoRequest(header=header)
        pending = head
        async for part in body:
            pending += part
            while len(pending) >= CHUNK:
                yield ingest_pb2.UploadVideoRequest(chunk=pending[:CHUNK])
                pending = pending[CHUNK:]
        if pending:
            yield ingest_pb2.UploadVideoRequest(chunk=pending)

    reply = await ingest.UploadVideo(stream(), metadata=md, timeout=st.settings.upload_timeout_s)
    return {"job_id": reply.job_id, "video_id": reply.video_id, "size_bytes": reply.size_bytes,
            "events_url": f"/api/v1/jobs/{quote(reply.job_id, safe='')}/events"}


def _job_id(job_id: str) -> str:
    if not job_id or len(job_id) > 128 or not job_id.isascii() or not job_id.replace("-", "").isalnum():
        raise InvalidInput(f"malformed job id {job_id[:140]!r}")
    return job_id


@router.get("/jobs/{job_id}", summary="An ingest job's state")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    st = _state(request)
    reply = await st.backends.ingest.GetJob(ingest_pb2.GetJobRequest(job_id=_job_id(job_id)),
                                            metadata=st.keys.metadata(request.headers), timeout=10)
    return job_json(reply.job)


@router.get("/jobs/{job_id}/events", summary="An ingest job's changes as server-sent events ('job', then 'end')",
            response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(request: Request, job_id: str) -> StreamingResponse:
    st = _state(request)
    md = st.keys.metadata(request.headers)
    ingest = st.backends.ingest
    # Asked once first, so an unknown job is a plain 404 rather than an error inside an event stream.
    first = await ingest.GetJob(ingest_pb2.GetJobRequest(job_id=_job_id(job_id)), metadata=md, timeout=10)

    async def events() -> AsyncIterator[str]:
        yield f"event: job\ndata: {json.dumps(job_json(first.job))}\n\n"
        try:
            async for update in ingest.WatchJob(ingest_pb2.WatchJobRequest(job_id=job_id), metadata=md,
                                                timeout=st.settings.upload_timeout_s):
                yield f"event: job\ndata: {json.dumps(job_json(update.job))}\n\n"
        except grpc.aio.AioRpcError as exc:
            status = HTTP_STATUS.get(exc.code(), 500)
            yield f"event: error\ndata: {json.dumps(error_body(status, exc.code().name, exc.details() or ''))}\n\n"
        yield "event: end\ndata: {}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running ingest job")
async def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    st = _state(request)
    md = st.keys.metadata(request.headers, need="write")
    reply = await st.backends.ingest.CancelJob(ingest_pb2.CancelJobRequest(job_id=_job_id(job_id)), metadata=md,
                                               timeout=10)
    return job_json(reply.job)


@router.delete("/videos/{video_id}", summary="Remove every clip of a video")
async def delete_video(request: Request, video_id: str) -> dict[str, Any]:
    st = _state(request)
    md = st.keys.metadata(request.headers, need="write")
    if not VIDEO_ID.fullmatch(video_id):
        raise InvalidInput(f"malformed video id {video_id[:140]!r}")
    reply = await st.backends.ingest.DeleteVideo(ingest_pb2.DeleteVideoRequest(video_id=video_id), metadata=md,
                                                 timeout=30)
    return {"video_id": video_id, "clips_deleted": reply.clips_deleted}


@router.get("/config", summary="What the pages need to know: whether a key is needed, whether ingest is there")
async def config(request: Request) -> dict[str, Any]:
    st = _state(request)
    return {"api_keys": st.keys.enabled, "ingest": st.settings.ingest is not None, "max_k": MAX_K,
            "max_upload_bytes": st.settings.max_upload_bytes, "max_query_bytes": st.settings.max_query_bytes}



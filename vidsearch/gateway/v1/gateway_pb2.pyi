from vidsearch.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TextQuery(_message.Message):
    __slots__ = ("text", "language")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    text: str
    language: str
    def __init__(self, text: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...

class VideoQuery(_message.Message):
    __slots__ = ("data", "start_seconds", "end_seconds")
    DATA_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    start_seconds: float
    end_seconds: float
    def __init__(self, data: _Optional[bytes] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("text", "image", "video", "clip_id", "top_k", "filter", "collapse_by_video")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    COLLAPSE_BY_VIDEO_FIELD_NUMBER: _ClassVar[int]
    text: TextQuery
    image: bytes
    video: VideoQuery
    clip_id: str
    top_k: int
    filter: _common_pb2.SearchFilter
    collapse_by_video: bool
    def __init__(self, text: _Optional[_Union[TextQuery, _Mapping]] = ..., image: _Optional[bytes] = ..., video: _Optional[_Union[VideoQuery, _Mapping]] = ..., clip_id: _Optional[str] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.SearchFilter, _Mapping]] = ..., collapse_by_video: _Optional[bool] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("encode_ms", "search_ms", "total_ms", "cache_hit")
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    encode_ms: float
    search_ms: float
    total_ms: float
    cache_hit: bool
    def __init__(self, encode_ms: _Optional[float] = ..., search_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., cache_hit: _Optional[bool] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("clip_id", "video_id", "start_seconds", "end_seconds", "start_timecode", "score", "caption", "tags", "thumbnail_ref", "shard", "metadata", "source_timecode", "source_end_timecode", "frame_rate", "model_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    START_TIMECODE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_REF_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TIMECODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_END_TIMECODE_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    clip_id: str
    video_id: str
    start_seconds: float
    end_seconds: float
    start_timecode: str
    score: float
    caption: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    thumbnail_ref: str
    shard: str
    metadata: _containers.ScalarMap[str, str]
    source_timecode: str
    source_end_timecode: str
    frame_rate: str
    model_id: str
    def __init__(self, clip_id: _Optional[str] = ..., video_id: _Optional[str] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., start_timecode: _Optional[str] = ..., score: _Optional[float] = ..., caption: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., thumbnail_ref: _Optional[str] = ..., shard: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., source_timecode: _Optional[str] = ..., source_end_timecode: _Optional[str] = ..., frame_rate: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "model_id", "partial", "failed_shards", "timings")
    HITS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    FAILED_SHARDS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    model_id: str
    partial: bool
    failed_shards: _containers.RepeatedScalarFieldContainer[str]
    timings: Timings
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., model_id: _Optional[str] = ..., partial: _Optional[bool] = ..., failed_shards: _Optional[_Iterable[str]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ...) -> None: ...

class BatchSearchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ...) -> None: ...

class BatchSearchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ...) -> None: ...

class SearchByVideoRequest(_message.Message):
    __slots__ = ("search", "chunk", "start_seconds", "end_seconds")
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    search: SearchRequest
    chunk: bytes
    start_seconds: float
    end_seconds: float
    def __init__(self, search: _Optional[_Union[SearchRequest, _Mapping]] = ..., chunk: _Optional[bytes] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ...) -> None: ...

class SearchByVideoResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: SearchResponse
    def __init__(self, result: _Optional[_Union[SearchResponse, _Mapping]] = ...) -> None: ...

class GetThumbnailRequest(_message.Message):
    __slots__ = ("clip_id",)
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    clip_id: str
    def __init__(self, clip_id: _Optional[str] = ...) -> None: ...

class GetThumbnailResponse(_message.Message):
    __slots__ = ("image", "content_type")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    content_type: str
    def __init__(self, image: _Optional[bytes] = ..., content_type: _Optional[str] = ...) -> None: ...

class GetClipRequest(_message.Message):
    __slots__ = ("clip_id",)
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    clip_id: str
    def __init__(self, clip_id: _Optional[str] = ...) -> None: ...

class GetClipResponse(_message.Message):
    __slots__ = ("data", "content_type", "start_seconds", "end_seconds")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    start_seconds: float
    end_seconds: float
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ...) -> None: ...

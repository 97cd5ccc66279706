from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_SOURCE_OUTSIDE_ROOTS: _ClassVar[ErrorReason]
    ERROR_REASON_SOURCE_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_SOURCE_UNREADABLE: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_SOURCE_OUTSIDE_ROOTS: ErrorReason
ERROR_REASON_SOURCE_NOT_FOUND: ErrorReason
ERROR_REASON_SOURCE_UNREADABLE: ErrorReason

class Vector(_message.Message):
    __slots__ = ("values", "packed")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    packed: bytes
    def __init__(self, values: _Optional[_Iterable[float]] = ..., packed: _Optional[bytes] = ...) -> None: ...

class ClipRecord(_message.Message):
    __slots__ = ("clip_id", "video_id", "start_seconds", "end_seconds", "vector", "caption", "tags", "thumbnail_ref", "model_id", "metadata")
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
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_REF_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    clip_id: str
    video_id: str
    start_seconds: float
    end_seconds: float
    vector: Vector
    caption: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    thumbnail_ref: str
    model_id: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, clip_id: _Optional[str] = ..., video_id: _Optional[str] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., caption: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., thumbnail_ref: _Optional[str] = ..., model_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SearchFilter(_message.Message):
    __slots__ = ("video_ids", "min_start_seconds", "max_end_seconds", "tags", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VIDEO_IDS_FIELD_NUMBER: _ClassVar[int]
    MIN_START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    video_ids: _containers.RepeatedScalarFieldContainer[str]
    min_start_seconds: float
    max_end_seconds: float
    tags: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, video_ids: _Optional[_Iterable[str]] = ..., min_start_seconds: _Optional[float] = ..., max_end_seconds: _Optional[float] = ..., tags: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ScoredClip(_message.Message):
    __slots__ = ("clip", "score", "shard")
    CLIP_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    clip: ClipRecord
    score: float
    shard: str
    def __init__(self, clip: _Optional[_Union[ClipRecord, _Mapping]] = ..., score: _Optional[float] = ..., shard: _Optional[str] = ...) -> None: ...

from vidsearch.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EncodeTextRequest(_message.Message):
    __slots__ = ("texts", "language")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    language: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., language: _Optional[str] = ...) -> None: ...

class EncodeTextResponse(_message.Message):
    __slots__ = ("embeddings", "model_id")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    model_id: str
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., model_id: _Optional[str] = ...) -> None: ...

class EncodeImagesRequest(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class EncodeImagesResponse(_message.Message):
    __slots__ = ("embeddings", "model_id")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    model_id: str
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., model_id: _Optional[str] = ...) -> None: ...

class RawFrames(_message.Message):
    __slots__ = ("count", "height", "width", "rgb")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    RGB_FIELD_NUMBER: _ClassVar[int]
    count: int
    height: int
    width: int
    rgb: bytes
    def __init__(self, count: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., rgb: _Optional[bytes] = ...) -> None: ...

class VideoSegment(_message.Message):
    __slots__ = ("data", "start_seconds", "end_seconds")
    DATA_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    start_seconds: float
    end_seconds: float
    def __init__(self, data: _Optional[bytes] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ...) -> None: ...

class VideoClip(_message.Message):
    __slots__ = ("frames", "segment")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    frames: RawFrames
    segment: VideoSegment
    def __init__(self, frames: _Optional[_Union[RawFrames, _Mapping]] = ..., segment: _Optional[_Union[VideoSegment, _Mapping]] = ...) -> None: ...

class EncodeVideosRequest(_message.Message):
    __slots__ = ("clips",)
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    clips: _containers.RepeatedCompositeFieldContainer[VideoClip]
    def __init__(self, clips: _Optional[_Iterable[_Union[VideoClip, _Mapping]]] = ...) -> None: ...

class EncodeVideosResponse(_message.Message):
    __slots__ = ("embeddings", "model_id")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    model_id: str
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., model_id: _Optional[str] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("model_id", "dimension", "frames_per_clip", "max_text_tokens", "image_size", "device", "dtype", "temporal", "max_batch_size", "max_queue_delay_ms", "architecture", "crop", "max_text_chars")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_CLIP_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dimension: int
    frames_per_clip: int
    max_text_tokens: int
    image_size: int
    device: str
    dtype: str
    temporal: str
    max_batch_size: int
    max_queue_delay_ms: int
    architecture: str
    crop: str
    max_text_chars: int
    def __init__(self, model_id: _Optional[str] = ..., dimension: _Optional[int] = ..., frames_per_clip: _Optional[int] = ..., max_text_tokens: _Optional[int] = ..., image_size: _Optional[int] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., temporal: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., max_queue_delay_ms: _Optional[int] = ..., architecture: _Optional[str] = ..., crop: _Optional[str] = ..., max_text_chars: _Optional[int] = ...) -> None: ...

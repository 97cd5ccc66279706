import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEGMENT_MODE_UNSPECIFIED: _ClassVar[SegmentMode]
    SEGMENT_MODE_FIXED: _ClassVar[SegmentMode]
    SEGMENT_MODE_SHOTS: _ClassVar[SegmentMode]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class JobStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STAGE_UNSPECIFIED: _ClassVar[JobStage]
    JOB_STAGE_PROBING: _ClassVar[JobStage]
    JOB_STAGE_DECODING: _ClassVar[JobStage]
    JOB_STAGE_ENCODING: _ClassVar[JobStage]
    JOB_STAGE_INDEXING: _ClassVar[JobStage]
    JOB_STAGE_DONE: _ClassVar[JobStage]
SEGMENT_MODE_UNSPECIFIED: SegmentMode
SEGMENT_MODE_FIXED: SegmentMode
SEGMENT_MODE_SHOTS: SegmentMode
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STAGE_UNSPECIFIED: JobStage
JOB_STAGE_PROBING: JobStage
JOB_STAGE_DECODING: JobStage
JOB_STAGE_ENCODING: JobStage
JOB_STAGE_INDEXING: JobStage
JOB_STAGE_DONE: JobStage

class SegmentOptions(_message.Message):
    __slots__ = ("mode", "window_seconds", "overlap_seconds")
    MODE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    mode: SegmentMode
    window_seconds: float
    overlap_seconds: float
    def __init__(self, mode: _Optional[_Union[SegmentMode, str]] = ..., window_seconds: _Optional[float] = ..., overlap_seconds: _Optional[float] = ...) -> None: ...

class VideoMetadata(_message.Message):
    __slots__ = ("title", "programme", "air_date", "tags", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PROGRAMME_FIELD_NUMBER: _ClassVar[int]
    AIR_DATE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    title: str
    programme: str
    air_date: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    extra: _containers.ScalarMap[str, str]
    def __init__(self, title: _Optional[str] = ..., programme: _Optional[str] = ..., air_date: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SubmitVideoRequest(_message.Message):
    __slots__ = ("uri", "video_id", "metadata", "segment")
    URI_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    uri: str
    video_id: str
    metadata: VideoMetadata
    segment: SegmentOptions
    def __init__(self, uri: _Optional[str] = ..., video_id: _Optional[str] = ..., metadata: _Optional[_Union[VideoMetadata, _Mapping]] = ..., segment: _Optional[_Union[SegmentOptions, _Mapping]] = ...) -> None: ...

class SubmitVideoResponse(_message.Message):
    __slots__ = ("job_id", "video_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    video_id: str
    def __init__(self, job_id: _Optional[str] = ..., video_id: _Optional[str] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("filename", "video_id", "metadata", "segment", "size_bytes")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    filename: str
    video_id: str
    metadata: VideoMetadata
    segment: SegmentOptions
    size_bytes: int
    def __init__(self, filename: _Optional[str] = ..., video_id: _Optional[str] = ..., metadata: _Optional[_Union[VideoMetadata, _Mapping]] = ..., segment: _Optional[_Union[SegmentOptions, _Mapping]] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class UploadVideoRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadVideoResponse(_message.Message):
    __slots__ = ("job_id", "video_id", "size_bytes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    video_id: str
    size_bytes: int
    def __init__(self, job_id: _Optional[str] = ..., video_id: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "video_id", "state", "stage", "clips_done", "clips_total", "error", "attempts", "uri", "created_at", "updated_at", "video_seconds")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CLIPS_DONE_FIELD_NUMBER: _ClassVar[int]
    CLIPS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    video_id: str
    state: JobState
    stage: JobStage
    clips_done: int
    clips_total: int
    error: str
    attempts: int
    uri: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    video_seconds: float
    def __init__(self, job_id: _Optional[str] = ..., video_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., stage: _Optional[_Union[JobStage, str]] = ..., clips_done: _Optional[int] = ..., clips_total: _Optional[int] = ..., error: _Optional[str] = ..., attempts: _Optional[int] = ..., uri: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., video_seconds: _Optional[float] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class DeleteVideoRequest(_message.Message):
    __slots__ = ("video_id",)
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    def __init__(self, video_id: _Optional[str] = ...) -> None: ...

class DeleteVideoResponse(_message.Message):
    __slots__ = ("clips_deleted",)
    CLIPS_DELETED_FIELD_NUMBER: _ClassVar[int]
    clips_deleted: int
    def __init__(self, clips_deleted: _Optional[int] = ...) -> None: ...

// Type declarations of @vidsearch/client. The message types are generated from the .proto files
// into ./types by scripts/build-protos.js (proto-loader-gen-types with the loader options of
// src/protos.js); this file declares the client around them.
import type * as grpc from '@grpc/grpc-js';
import type { SearchFilter } from './types/vidsearch/common/v1/SearchFilter';
import type { SearchResponse__Output } from './types/vidsearch/gateway/v1/SearchResponse';
import type { SearchHit__Output } from './types/vidsearch/gateway/v1/SearchHit';
import type { GetThumbnailResponse__Output } from './types/vidsearch/gateway/v1/GetThumbnailResponse';
import type { GetClipResponse__Output } from './types/vidsearch/gateway/v1/GetClipResponse';
import type { VideoMetadata } from './types/vidsearch/ingest/v1/VideoMetadata';
import type { SegmentOptions } from './types/vidsearch/ingest/v1/SegmentOptions';
import type { SubmitVideoResponse__Output } from './types/vidsearch/ingest/v1/SubmitVideoResponse';
import type { UploadVideoResponse__Output } from './types/vidsearch/ingest/v1/UploadVideoResponse';
import type { DeleteVideoResponse__Output } from './types/vidsearch/ingest/v1/DeleteVideoResponse';
import type { Job__Output } from './types/vidsearch/ingest/v1/Job';
import type { JobState__Output } from './types/vidsearch/ingest/v1/JobState';
import type { ProtoGrpcType as GatewayProto } from './types/gateway';
import type { ProtoGrpcType as IngestProto } from './types/ingest';

export type { SearchFilter, VideoMetadata, SegmentOptions };
export type SearchResponse = SearchResponse__Output;
export type SearchHit = SearchHit__Output;
export type Thumbnail = GetThumbnailResponse__Output;
export type ClipChunk = GetClipResponse__Output;
export type SubmitVideoResponse = SubmitVideoResponse__Output;
export type UploadVideoResponse = UploadVideoResponse__Output;
export type DeleteVideoResponse = DeleteVideoResponse__Output;
export type Job = Job__Output;
export type JobState = JobState__Output;

/** A file path, or the bytes themselves. */
export type Bytes = string | Buffer | Uint8Array;

/** TLS settings; any of them turns TLS on. Without a CA the system trust store verifies the server. */
export interface TlsOptions {
  /** PEM file of the CA that signed the server certificate. */
  caFile?: string;
  /** The CA's PEM, instead of caFile. */
  ca?: string | Buffer;
  /** Client certificate (PEM file) for mutual TLS; needs keyFile. */
  certFile?: string;
  /** Client key (PEM file) for mutual TLS; needs certFile. */
  keyFile?: string;
  /** Client certificate PEM, instead of certFile. */
  cert?: string | Buffer;
  /** Client key PEM, instead of keyFile. */
  key?: string | Buffer;
  /** Name to verify the server certificate against (grpc.ssl_target_name_override). */
  serverName?: string;
}

export interface ClientOptions {
  /** Gateway address, host:port or dns:///name:port. */
  gateway?: string;
  /** Ingest address. */
  ingest?: string;
  /** Sent as x-api-key on every call. */
  apiKey?: string;
  /** Absent or false: plaintext. true: TLS with the system trust store. */
  tls?: boolean | TlsOptions;
  /** Deadline of unary calls, ms (default 30000). */
  deadlineMs?: number;
  /** Deadline of streaming calls (uploads, video search, playback, job watching), ms (default 600000). */
  streamDeadlineMs?: number;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
  /** Folder holding vidsearch/{gateway,ingest}/v1/*.proto (default: the package's protos/). */
  protoRoot?: string;
}

export interface CallOptions {
  /** This call's deadline, ms from now. */
  deadlineMs?: number;
}

export interface SearchOptions extends CallOptions {
  /** Number of hits wanted, 1..1000 (default 10). */
  topK?: number;
  /** Restricts the hits. */
  filter?: SearchFilter;
  /** At most one hit (the best clip) per video. */
  collapseByVideo?: boolean;
}

export interface TextSearchOptions extends SearchOptions {
  /** BCP-47 language hint ("ko", "en"). */
  language?: string;
}

/** One query of batchSearch or query(): exactly one of text, image, video or clipId (image and video: a path or bytes). */
export type SearchQuery = SearchOptions & (
  | { text: string; language?: string }
  | { image: Bytes }
  | { video: Bytes; startSeconds?: number; endSeconds?: number }
  | { clipId: string }
);

export interface VideoSearchOptions extends SearchOptions {
  /** Start of the part to search with, seconds. */
  startSeconds?: number;
  /** End of the part to search with, seconds; 0 means the end. */
  endSeconds?: number;
  /** Chunk size, 1..1048576 bytes. */
  chunkBytes?: number;
}

export interface SubmitOptions extends CallOptions {
  /** Stable id for the video; empty derives it from the content hash. */
  videoId?: string;
  metadata?: VideoMetadata;
  segment?: SegmentOptions;
}

export interface UploadOptions extends SubmitOptions {
  /** File name sent in the header (default: the path's base name, or video.mp4 for bytes). */
  filename?: string;
  /** Chunk size, 1..1048576 bytes. */
  chunkBytes?: number;
}

export interface WaitOptions {
  /** Give up after this long, ms (default 600000). */
  timeoutMs?: number;
  /** Interval of GetJob polling when WatchJob is unavailable, ms (default 1000). */
  pollMs?: number;
  /** Called with every state seen. */
  onUpdate?: (job: Job) => void;
}

export interface Clip {
  data: Buffer;
  content_type: string;
  start_seconds: number;
  end_seconds: number;
}

export declare class VidsearchClient {
  constructor(options?: ClientOptions);
  /** Searches with any query. */
  query(query: SearchQuery, options?: CallOptions): Promise<SearchResponse>;
  /** Searches by a sentence. */
  search(text: string, options?: TextSearchOptions): Promise<SearchResponse>;
  /** Searches by an image: a file path or its encoded bytes. */
  searchByImage(image: Bytes, options?: SearchOptions): Promise<SearchResponse>;
  /** "More like this": searches with the stored embedding of an indexed clip. */
  searchByClip(clipId: string, options?: SearchOptions): Promise<SearchResponse>;
  /** Searches by a video (a file path or its bytes), streamed in chunks. */
  searchByVideo(video: Bytes, options?: VideoSearchOptions): Promise<SearchResponse>;
  /** Several queries (at most 64) in one call; their responses in order. */
  batchSearch(queries: SearchQuery[], options?: CallOptions): Promise<SearchResponse[]>;
  /** A clip's thumbnail JPEG. */
  getThumbnail(clipId: string, options?: CallOptions): Promise<Thumbnail>;
  /** A clip's playback stream; leaving the loop early cancels it. */
  streamClip(clipId: string, options?: CallOptions): AsyncIterableIterator<ClipChunk>;
  /** A clip's whole video. */
  getClip(clipId: string, options?: CallOptions): Promise<Clip>;
  /** Queues a video already on storage the ingest service can read. */
  submitVideo(uri: string, options?: SubmitOptions): Promise<SubmitVideoResponse>;
  /** Uploads a video (a file path or its bytes) in chunks and queues it. */
  uploadVideo(video: Bytes, options?: UploadOptions): Promise<UploadVideoResponse>;
  /** A job's current state. */
  getJob(jobId: string, options?: CallOptions): Promise<Job>;
  /** A job's states on every change, ending with its final state; leaving early cancels. */
  watchJob(jobId: string, options?: CallOptions): AsyncIterableIterator<Job>;
  /** Resolves once the job is final (WatchJob, or GetJob polling where watching is unavailable). */
  waitForJob(jobId: string, options?: WaitOptions): Promise<Job>;
  /** Cancels a queued or running job. */
  cancelJob(jobId: string, options?: CallOptions): Promise<Job>;
  /** Removes every clip of a video from the index. */
  deleteVideo(videoId: string, options?: CallOptions): Promise<DeleteVideoResponse>;
  /** Closes the channels. */
  close(): void;
}

/** TLS was asked for but cannot be set up (unreadable or invalid CA, certificate or key). */
export declare class TlsSetupError extends Error {}

/** Credentials and channel options for a `tls` setting; throws TlsSetupError. */
export declare function channelCredentials(tls?: boolean | TlsOptions): {
  credentials: grpc.ChannelCredentials;
  options: grpc.ChannelOptions;
};

/** The generated gateway and ingest service constructors, for direct use with grpc-js. */
export declare function loadProtos(protoRoot?: string): {
  gateway: GatewayProto['vidsearch']['gateway']['v1'];
  ingest: IngestProto['vidsearch']['ingest']['v1'];
};

/** The largest chunk the upload and video-search contracts accept, bytes. */
export declare const CHUNK_BYTES: number;
/** The job states after which a job no longer changes. */
export declare const FINAL_STATES: ReadonlySet<JobState>;
/** gRPC status codes, to compare with a failed call's `code`. */
export declare const status: typeof grpc.status;

/** A failed call: grpc-js's ServiceError (code, details, metadata). */
export type ServiceError = grpc.ServiceError;

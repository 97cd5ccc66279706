'use strict';
/**
 * vidsearch client for Node.js: every public RPC of the gateway (search by text, image, video or
 * clip id, batch search, thumbnails, clip playback) and of ingest (submit, upload, get, watch and
 * cancel jobs, delete videos), as promises and async iterators.
 *
 * Every call carries a deadline; the API key goes in the `x-api-key` metadata of each call
 * (services/common/auth.py). Replies are plain objects with the .proto field names.
 */
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const { loadProtos } = require('./protos');
const { channelCredentials, TlsSetupError } = require('./credentials');

/** Chunk size of uploads and video searches: the contracts allow at most 1 MiB per chunk. */
const CHUNK_BYTES = 1024 * 1024;
const FINAL_STATES = new Set(['JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED']);
// Matches the servers' keepalive policy and message limit (services/common/server.py).
const CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 30000,
  'grpc.keepalive_timeout_ms': 10000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
};

function deadline(ms) {
  return new Date(Date.now() + ms);
}

function checkChunkBytes(chunkBytes) {
  if (!(Number.isInteger(chunkBytes) && chunkBytes > 0 && chunkBytes <= CHUNK_BYTES)) {
    throw new RangeError(`chunkBytes must be an integer in 1..${CHUNK_BYTES}`);
  }
}

/** The bytes of `source` (a file path or a Buffer) in chunks of at most `chunkBytes`. */
async function* chunksOf(source, chunkBytes) {
  if (typeof source === 'string') {
    yield* fs.createReadStream(source, { highWaterMark: chunkBytes });
    return;
  }
  const bytes = Buffer.from(source);
  for (let offset = 0; offset < bytes.length; offset += chunkBytes) yield bytes.subarray(offset, offset + chunkBytes);
}

function readBytes(source) {
  return typeof source === 'string' ? fs.promises.readFile(source) : Promise.resolve(Buffer.from(source));
}

/**
 * One SearchRequest from a query: exactly one of text, image, video (a file path or bytes, read
 * here) or clipId, plus topK, filter (a SearchFilter) and collapseByVideo.
 */
async function searchRequest(query) {
  const { topK = 10, filter, collapseByVideo = false } = query;
  const request = { top_k: topK, collapse_by_video: collapseByVideo };
  if (filter) request.filter = filter;
  const given = ['text', 'image', 'video', 'clipId'].filter((k) => query[k] !== undefined && query[k] !== null);
  if (given.length > 1) throw new TypeError(`a query has one of text, image, video or clipId, not ${given.join(' and ')}`);
  const [kind] = given; // none: the gateway answers INVALID_ARGUMENT "the query is empty"
  if (kind === 'text') request.text = { text: query.text, language: query.language || '' };
  else if (kind === 'image') request.image = await readBytes(query.image);
  else if (kind === 'video') {
    request.video = { data: await readBytes(query.video), start_seconds: query.startSeconds || 0, end_seconds: query.endSeconds || 0 };
  } else if (kind === 'clipId') request.clip_id = query.clipId;
  return request;
}

class VidsearchClient {
  /**
   * @param {object} options
   * @param {string} [options.gateway] gateway address, host:port or dns:///name:port
   * @param {string} [options.ingest] ingest address
   * @param {string} [options.apiKey] sent as x-api-key on every call
   * @param {boolean|object} [options.tls] see channelCredentials: true for the system trust store,
   *   or {caFile, certFile, keyFile, serverName}; absent means plaintext
   * @param {number} [options.deadlineMs] deadline of unary calls (default 30 s)
   * @param {number} [options.streamDeadlineMs] deadline of streaming calls (default 10 min)
   * @param {object} [options.channelOptions] extra grpc-js channel options
   */
  constructor({ gateway, ingest, apiKey, tls, deadlineMs = 30000, streamDeadlineMs = 600000, channelOptions = {}, protoRoot } = {}) {
    const protos = loadProtos(protoRoot);
    const { credentials, options } = channelCredentials(tls);
    const channel = { ...CHANNEL_OPTIONS, ...options, ...channelOptions };
    this.apiKey = apiKey;
    this.deadlineMs = deadlineMs;
    this.streamDeadlineMs = streamDeadlineMs;
    this.gateway_ = gateway ? new protos.gateway.SearchService(gateway, credentials, channel) : null;
    this.ingest_ = ingest ? new protos.ingest.IngestService(ingest, credentials, channel) : null;
  }

  metadata() {
    const md = new grpc.Metadata();
    if (this.apiKey) md.set('x-api-key', this.apiKey);
    return md;
  }

  stub(which) {
    const stub = which === 'gateway' ? this.gateway_ : this.ingest_;
    if (!stub) throw new Error(`no ${which} address was given`);
    return stub;
  }

  unary(which, method, request, deadlineMs = this.deadlineMs) {
    return new Promise((resolve, reject) => {
      this.stub(which)[method](request, this.metadata(), { deadline: deadline(deadlineMs) }, (err, reply) =>
        (err ? reject(err) : resolve(reply)));
    });
  }

  /**
   * A client-streaming call: writes `messages` (an async iterable) honouring back-pressure,
   * then resolves to the reply. A failing source cancels the call.
   */
  clientStream(which, method, messages, deadlineMs = this.streamDeadlineMs) {
    return new Promise((resolve, reject) => {
      let settled = false;
      let wake = () => {};
      const call = this.stub(which)[method](this.metadata(), { deadline: deadline(deadlineMs) }, (err, reply) => {
        settled = true;
        wake();
        if (err) reject(err);
        else resolve(reply);
      });
      (async () => {
        for await (const message of messages) {
          if (settled) return; // the server answered (an error) before the end of the upload
          if (!call.write(message)) {
            await new Promise((r) => { wake = r; call.once('drain', r); });
          }
        }
        call.end();
      })().catch((err) => {
        settled = true;
        call.cancel();
        reject(err);
      });
    });
  }

  /** The messages of a server-streaming call; leaving the loop early cancels the call. */
  async* serverStream(which, method, request, deadlineMs = this.streamDeadlineMs) {
    const call = this.stub(which)[method](request, this.metadata(), { deadline: deadline(deadlineMs) });
    try {
      for await (const message of call) yield message;
    } finally {
      call.on('error', () => {}); // the CANCELLED status of an abandoned call is expected
      call.cancel();
    }
  }

  // ---- gateway ----

  /**
   * Searches with any query ({text | image | video | clipId, topK, filter, collapseByVideo});
   * an image or video is a file path or its bytes.
   */
  async query(query, { deadlineMs } = {}) {
    return this.unary('gateway', 'Search', await searchRequest(query), deadlineMs);
  }

  /** Searches by a sentence; resolves to a SearchResponse (hits best first). */
  search(text, options = {}) {
    return this.query({ ...options, text }, options);
  }

  /** Searches by an image: a file path or its encoded bytes (JPEG, PNG, ...). */
  searchByImage(image, options = {}) {
    return this.query({ ...options, image }, options);
  }

  /** "More like this": searches with the stored embedding of an indexed clip. */
  searchByClip(clipId, options = {}) {
    return this.query({ ...options, clipId }, options);
  }

  /**
   * Searches by a video (a file path or its bytes), streamed in chunks with SearchByVideo;
   * startSeconds/endSeconds pick the part to search with. Resolves to a SearchResponse.
   */
  searchByVideo(video, { startSeconds = 0, endSeconds = 0, chunkBytes = CHUNK_BYTES, deadlineMs, ...query } = {}) {
    checkChunkBytes(chunkBytes);
    async function* messages() {
      yield { search: await searchRequest(query), start_seconds: startSeconds, end_seconds: endSeconds };
      for await (const chunk of chunksOf(video, chunkBytes)) yield { chunk };
    }
    return this.clientStream('gateway', 'SearchByVideo', messages(), deadlineMs).then((reply) => reply.result);
  }

  /** Runs several queries (at most 64) in one call; resolves to their SearchResponses in order. */
  async batchSearch(queries, { deadlineMs } = {}) {
    const requests = await Promise.all(queries.map(searchRequest));
    const reply = await this.unary('gateway', 'BatchSearch', { requests }, deadlineMs);
    return reply.responses;
  }

  /** A clip's thumbnail: resolves to {image: Buffer (JPEG), content_type}. */
  getThumbnail(clipId, { deadlineMs } = {}) {
    return this.unary('gateway', 'GetThumbnail', { clip_id: clipId }, deadlineMs);
  }

  /**
   * The playback stream of a clip: an async iterator of GetClipResponse chunks ({data, ...});
   * the first carries content_type and the time range.
   */
  streamClip(clipId, { deadlineMs } = {}) {
    return this.serverStream('gateway', 'GetClip', { clip_id: clipId }, deadlineMs);
  }

  /** A clip's whole video: resolves to {data: Buffer, content_type, start_seconds, end_seconds}. */
  async getClip(clipId, options = {}) {
    let first = null;
    const parts = [];
    for await (const message of this.streamClip(clipId, options)) {
      if (first === null) first = message;
      parts.push(message.data);
    }
    if (first === null) throw new Error(`the gateway sent no data for clip ${clipId}`);
    const { content_type, start_seconds, end_seconds } = first;
    return { data: Buffer.concat(parts), content_type, start_seconds, end_seconds };
  }

  // ---- ingest ----

  /** Queues a video already on storage the ingest service can read; resolves to {job_id, video_id}. */
  submitVideo(uri, { videoId = '', metadata, segment, deadlineMs } = {}) {
    const request = { uri, video_id: videoId };
    if (metadata) request.metadata = metadata;
    if (segment) request.segment = segment;
    return this.unary('ingest', 'SubmitVideo', request, deadlineMs);
  }

  /**
   * Uploads a video (a file path or its bytes) with UploadVideo: a header, then chunks of at
   * most `chunkBytes` (1 MiB). Resolves to {job_id, video_id, size_bytes}.
   */
  uploadVideo(video, { videoId = '', filename, metadata = {}, segment, chunkBytes = CHUNK_BYTES, deadlineMs } = {}) {
    checkChunkBytes(chunkBytes);
    const isPath = typeof video === 'string';
    const header = {
      filename: filename || (isPath ? path.basename(video) : 'video.mp4'),
      video_id: videoId,
      metadata,
      size_bytes: String(isPath ? fs.statSync(video).size : video.length),
    };
    if (segment) header.segment = segment;
    async function* messages() {
      yield { header };
      for await (const chunk of chunksOf(video, chunkBytes)) yield { chunk };
    }
    return this.clientStream('ingest', 'UploadVideo', messages(), deadlineMs);
  }

  /** A job's current state. */
  getJob(jobId, { deadlineMs } = {}) {
    return this.unary('ingest', 'GetJob', { job_id: jobId }, deadlineMs).then((reply) => reply.job);
  }

  /** An async iterator of a job's states, on every change, ending with its final state. */
  async* watchJob(jobId, { deadlineMs } = {}) {
    for await (const { job } of this.serverStream('ingest', 'WatchJob', { job_id: jobId }, deadlineMs)) {
      yield job;
      if (FINAL_STATES.has(job.state)) return;
    }
  }

  /**
   * Resolves with the job once it is final (succeeded, failed or cancelled), following
   * WatchJob; falls back to polling GetJob when the stream is unavailable or ends early.
   */
  async waitForJob(jobId, { timeoutMs = 600000, pollMs = 1000, onUpdate = () => {} } = {}) {
    const until = Date.now() + timeoutMs;
    let last = null;
    try {
      for await (const job of this.watchJob(jobId, { deadlineMs: timeoutMs })) {
        last = job;
        onUpdate(job);
      }
    } catch (err) {
      if (err && err.code === grpc.status.DEADLINE_EXCEEDED) throw timeoutError(jobId, timeoutMs);
      // e.g. UNIMPLEMENTED or a dropped stream: poll instead (GetJob reports lasting errors)
    }
    if (last && FINAL_STATES.has(last.state)) return last;
    for (;;) {
      const job = await this.getJob(jobId, { deadlineMs: Math.max(1, Math.min(this.deadlineMs, until - Date.now())) });
      onUpdate(job);
      if (FINAL_STATES.has(job.state)) return job;
      if (Date.now() + pollMs > until) throw timeoutError(jobId, timeoutMs);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Cancels a queued or running job; resolves to the job (final jobs come back unchanged). */
  cancelJob(jobId, { deadlineMs } = {}) {
    return this.unary('ingest', 'CancelJob', { job_id: jobId }, deadlineMs).then((reply) => reply.job);
  }

  /** Removes every clip of a video from the index; resolves to {clips_deleted}. */
  deleteVideo(videoId, { deadlineMs } = {}) {
    return this.unary('ingest', 'DeleteVideo', { video_id: videoId }, deadlineMs);
  }

  close() {
    for (const stub of [this.gateway_, this.ingest_]) if (stub) stub.close();
  }
}

function timeoutError(jobId, timeoutMs) {
  return new Error(`job ${jobId} did not finish within ${timeoutMs} ms`);
}

module.exports = {
  VidsearchClient,
  TlsSetupError,
  channelCredentials,
  loadProtos,
  CHUNK_BYTES,
  FINAL_STATES,
  status: grpc.status,
};

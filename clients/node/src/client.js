'use strict';
/**
 * vidsearch client for Node.js: upload a video to ingest, follow its job, search the gateway.
 *
 * The .proto files are loaded at run time from the repository's protos/ (or VIDSEARCH_PROTO_ROOT),
 * so there is no generated code to keep in step. Every call carries a deadline; the API key goes
 * in the `x-api-key` metadata of each call.
 */
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const DEFAULT_PROTO_ROOT = path.resolve(__dirname, '..', '..', '..', 'protos');
/** Upload chunk size: the UploadVideo contract allows at most 1 MiB per chunk. */
const CHUNK_BYTES = 1024 * 1024;
const FINAL_STATES = new Set(['JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED']);
// Matches the servers' keepalive policy (services/common/server.py).
const CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 30000,
  'grpc.keepalive_timeout_ms': 10000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
};

/** Loads the gateway and ingest packages; field names stay as written in the .proto files. */
function loadProtos(protoRoot = process.env.VIDSEARCH_PROTO_ROOT || DEFAULT_PROTO_ROOT) {
  const definition = protoLoader.loadSync(
    ['vidsearch/gateway/v1/gateway.proto', 'vidsearch/ingest/v1/ingest.proto'],
    { includeDirs: [protoRoot], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
  const root = grpc.loadPackageDefinition(definition);
  return { gateway: root.vidsearch.gateway.v1, ingest: root.vidsearch.ingest.v1 };
}

/**
 * Channel credentials: plaintext unless a CA file is given; a client certificate and key add
 * mutual TLS.
 */
function channelCredentials({ caFile, certFile, keyFile } = {}) {
  if (!caFile) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    fs.readFileSync(caFile),
    keyFile ? fs.readFileSync(keyFile) : null,
    certFile ? fs.readFileSync(certFile) : null,
  );
}

function deadline(ms) {
  return new Date(Date.now() + ms);
}

class VidsearchClient {
  /**
   * @param {object} options
   * @param {string} [options.gateway] gateway address, host:port or dns:///name:port
   * @param {string} [options.ingest] ingest address
   * @param {string} [options.apiKey] sent as x-api-key on every call
   * @param {object} [options.tls] {caFile, certFile, keyFile, serverName}
   * @param {number} [options.deadlineMs] deadline of unary calls
   */
  constructor({ gateway, ingest, apiKey, tls, protoRoot, deadlineMs = 30000 } = {}) {
    const protos = loadProtos(protoRoot);
    const creds = channelCredentials(tls);
    const options = { ...CHANNEL_OPTIONS };
    if (tls && tls.serverName) options['grpc.ssl_target_name_override'] = tls.serverName;
    this.apiKey = apiKey;
    this.deadlineMs = deadlineMs;
    this.search_ = gateway ? new protos.gateway.SearchService(gateway, creds, options) : null;
    this.ingest_ = ingest ? new protos.ingest.IngestService(ingest, creds, options) : null;
  }

  metadata() {
    const md = new grpc.Metadata();
    if (this.apiKey) md.set('x-api-key', this.apiKey);
    return md;
  }

  service(which) {
    const stub = which === 'gateway' ? this.search_ : this.ingest_;
    if (!stub) throw new Error(`no ${which} address was given`);
    return stub;
  }

  unary(which, method, request, deadlineMs = this.deadlineMs) {
    const stub = this.service(which);
    return new Promise((resolve, reject) => {
      stub[method](request, this.metadata(), { deadline: deadline(deadlineMs) }, (err, reply) =>
        (err ? reject(err) : resolve(reply)));
    });
  }

  /** Searches by text; resolves to a SearchResponse (hits best first). */
  search(text, { topK = 10, language = '', filter, collapseByVideo = false, deadlineMs } = {}) {
    const request = { text: { text, language }, top_k: topK, collapse_by_video: collapseByVideo };
    if (filter) request.filter = filter;
    return this.unary('gateway', 'Search', request, deadlineMs);
  }

  /**
   * Uploads a file with UploadVideo: a header, then chunks of at most `chunkBytes` (1 MiB),
   * honouring the stream's back-pressure. Resolves to {job_id, video_id, size_bytes}.
   */
  uploadVideo(filePath, { videoId = '', metadata = {}, segment, chunkBytes = CHUNK_BYTES, deadlineMs = 600000 } = {}) {
    if (!(chunkBytes > 0 && chunkBytes <= CHUNK_BYTES)) throw new RangeError(`chunkBytes must be in 1..${CHUNK_BYTES}`);
    const stub = this.service('ingest');
    const size = fs.statSync(filePath).size;
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (err, reply) => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else resolve(reply);
      };
      const call = stub.UploadVideo(this.metadata(), { deadline: deadline(deadlineMs) }, finish);
      const header = { filename: path.basename(filePath), video_id: videoId, metadata, size_bytes: String(size) };
      if (segment) header.segment = segment;
      call.write({ header });
      const file = fs.createReadStream(filePath, { highWaterMark: chunkBytes });
      file.on('data', (chunk) => {
        if (!call.write({ chunk })) {
          file.pause();
          call.once('drain', () => file.resume());
        }
      });
      file.on('end', () => call.end());
      file.on('error', (err) => {
        call.cancel();
        finish(err);
      });
    });
  }

  getJob(jobId, { deadlineMs } = {}) {
    return this.unary('ingest', 'GetJob', { job_id: jobId }, deadlineMs).then((reply) => reply.job);
  }

  /**
   * Resolves with the job once it is final (succeeded, failed or cancelled), following
   * WatchJob; falls back to polling GetJob when the stream is unavailable or ends early.
   */
  async waitForJob(jobId, { timeoutMs = 600000, pollMs = 1000, onUpdate = () => {} } = {}) {
    const until = Date.now() + timeoutMs;
    const watched = await this.watchJob(jobId, until, onUpdate).catch((err) => {
      if (err && err.code === grpc.status.DEADLINE_EXCEEDED) throw timeoutError(jobId, timeoutMs);
      return null; // e.g. UNIMPLEMENTED or a dropped stream: poll instead
    });
    if (watched && FINAL_STATES.has(watched.state)) return watched;
    for (;;) {
      const job = await this.getJob(jobId, { deadlineMs: Math.max(1, Math.min(this.deadlineMs, until - Date.now())) });
      onUpdate(job);
      if (FINAL_STATES.has(job.state)) return job;
      if (Date.now() + pollMs > until) throw timeoutError(jobId, timeoutMs);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Follows WatchJob until a final state, the end of the stream, or `until`; resolves to the last job seen. */
  watchJob(jobId, until, onUpdate) {
    const stub = this.service('ingest');
    return new Promise((resolve, reject) => {
      let last = null;
      const call = stub.WatchJob({ job_id: jobId }, this.metadata(), { deadline: new Date(until) });
      call.on('data', (reply) => {
        last = reply.job;
        onUpdate(last);
        if (FINAL_STATES.has(last.state)) {
          call.cancel();
          resolve(last);
        }
      });
      call.on('error', (err) => {
        if (last && FINAL_STATES.has(last.state)) resolve(last);
        else reject(err);
      });
      call.on('end', () => resolve(last));
    });
  }

  close() {
    for (const stub of [this.search_, this.ingest_]) if (stub) stub.close();
  }
}

function timeoutError(jobId, timeoutMs) {
  return new Error(`job ${jobId} did not finish within ${timeoutMs} ms`);
}

module.exports = { VidsearchClient, loadProtos, channelCredentials, CHUNK_BYTES, FINAL_STATES };

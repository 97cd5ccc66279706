'use strict';
// In-process fake gateway and ingest servers built from the package's protos, recording what
// they receive, and a throwaway CA with server and client certificates (openssl) for TLS tests.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const { loadProtos } = require('../src/client');

const protos = loadProtos();

function job(state, extra = {}) {
  return { job_id: 'job-1', video_id: 'vid-1', state, stage: 'JOB_STAGE_ENCODING', ...extra };
}

function hit(clipId = 'vid-1:000000000') {
  return { clip_id: clipId, video_id: 'vid-1', score: 0.5, start_timecode: '00:00:00.000', shard: 'shard-0' };
}

/** Collects a client stream's messages, then answers with reply(messages). */
function collect(calls, name, reply) {
  return (call, callback) => {
    calls.keys.push(call.metadata.get('x-api-key')[0]);
    const messages = [];
    call.on('data', (msg) => messages.push(msg));
    call.on('end', () => {
      calls[name].push(messages);
      callback(null, reply(messages));
    });
  };
}

/**
 * Starts a fake server with both services; `overrides` replace handlers by method name.
 * Resolves to {address, calls, server}; `calls` holds the requests and API keys seen.
 */
async function fakeServer(overrides = {}, credentials = grpc.ServerCredentials.createInsecure()) {
  const calls = { keys: [], Search: [], BatchSearch: [], SearchByVideo: [], GetThumbnail: [], GetClip: [],
    SubmitVideo: [], UploadVideo: [], GetJob: [], WatchJob: [], CancelJob: [], DeleteVideo: [], cancelled: [] };
  const unary = (name, reply) => (call, callback) => {
    calls.keys.push(call.metadata.get('x-api-key')[0]);
    calls[name].push(call.request);
    callback(null, reply(call.request));
  };
  const server = new grpc.Server();
  const searchResponse = (request) => ({ model_id: 'tiny', hits: [hit(request.clip_id || undefined)] });
  server.addService(protos.gateway.SearchService.service, {
    Search: unary('Search', searchResponse),
    BatchSearch: unary('BatchSearch', (request) => ({ responses: request.requests.map(searchResponse) })),
    SearchByVideo: collect(calls, 'SearchByVideo', () => ({ result: searchResponse({}) })),
    GetThumbnail: unary('GetThumbnail', () => ({ image: Buffer.from([0xff, 0xd8, 0xff]), content_type: 'image/jpeg' })),
    GetClip(call) {
      calls.keys.push(call.metadata.get('x-api-key')[0]);
      calls.GetClip.push(call.request);
      call.on('cancelled', () => calls.cancelled.push('GetClip'));
      call.write({ data: Buffer.from('abc'), content_type: 'video/mp4', start_seconds: 20, end_seconds: 40 });
      call.write({ data: Buffer.from('def') });
      call.write({ data: Buffer.from('g') });
      call.end();
    },
    ...overrides,
  });
  let polls = 0;
  server.addService(protos.ingest.IngestService.service, {
    SubmitVideo: unary('SubmitVideo', (request) => ({ job_id: 'job-1', video_id: request.video_id || 'derived' })),
    UploadVideo: collect(calls, 'UploadVideo', (messages) => ({
      job_id: 'job-1', video_id: 'vid-1',
      size_bytes: String(messages.filter((m) => m.part === 'chunk').reduce((n, m) => n + m.chunk.length, 0)),
    })),
    GetJob: unary('GetJob', () => {
      polls += 1;
      return { job: polls < 3 ? job('JOB_STATE_RUNNING') : job('JOB_STATE_SUCCEEDED', { clips_done: 2, clips_total: 2 }) };
    }),
    WatchJob(call) {
      calls.keys.push(call.metadata.get('x-api-key')[0]);
      calls.WatchJob.push(call.request);
      for (const state of ['JOB_STATE_QUEUED', 'JOB_STATE_RUNNING', 'JOB_STATE_SUCCEEDED']) call.write({ job: job(state) });
      call.end();
    },
    CancelJob: unary('CancelJob', () => ({ job: job('JOB_STATE_CANCELLED') })),
    DeleteVideo: unary('DeleteVideo', () => ({ clips_deleted: 7 })),
    ...overrides,
  });
  const port = await new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials,
    (err, p) => (err ? reject(err) : resolve(p))));
  return { address: `127.0.0.1:${port}`, calls, server };
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vidsearch-node-'));
}

function tempFile(bytes, name = 'clip.mp4') {
  const file = path.join(tempDir(), name);
  fs.writeFileSync(file, bytes);
  return file;
}

/**
 * A throwaway CA signing a server certificate for search.example.com (and localhost) and a
 * client certificate; resolves file paths {dir, ca, serverCert, serverKey, clientCert, clientKey, otherCa}.
 */
function testCertificates() {
  const dir = tempDir();
  const openssl = (...args) => {
    try {
      return execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    } catch (err) {
      if (err.code === 'ENOENT') throw new Error('the TLS tests need openssl: apt-get install -y openssl');
      throw err;
    }
  };
  const selfSigned = (name, cn) => openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.crt`);
  const signed = (name, cn, ext) => {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
      '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
  };
  selfSigned('ca', 'vidsearch test CA');
  selfSigned('other-ca', 'some other CA');
  signed('server', 'search.example.com', 'subjectAltName=DNS:search.example.com,DNS:localhost,IP:127.0.0.1\n');
  signed('client', 'node client', 'extendedKeyUsage=clientAuth\n');
  const at = (name) => path.join(dir, name);
  return { dir, ca: at('ca.crt'), otherCa: at('other-ca.crt'), serverCert: at('server.crt'), serverKey: at('server.key'),
    clientCert: at('client.crt'), clientKey: at('client.key') };
}

module.exports = { protos, job, fakeServer, tempFile, tempDir, testCertificates };

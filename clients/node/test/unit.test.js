'use strict';
// The client against in-process fake gateway and ingest servers built from the same protos:
// chunking, metadata, job following and its polling fallback, and the CLI. No stack needed.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const { VidsearchClient, loadProtos, CHUNK_BYTES } = require('../src/client');
const { main } = require('../bin/vidsearch');

const protos = loadProtos();
const API_KEY = 'unit-test-key-0123456789';

function job(state, extra = {}) {
  return { job_id: 'job-1', video_id: 'vid-1', state, stage: 'JOB_STAGE_ENCODING', ...extra };
}

/** Starts a server with the given handlers; resolves to {address, calls, server}. */
async function fakeServer({ watchJob } = {}) {
  const calls = { upload: [], search: [], getJob: 0, keys: [] };
  const server = new grpc.Server();
  const key = (call) => calls.keys.push(call.metadata.get('x-api-key')[0]);
  server.addService(protos.ingest.IngestService.service, {
    UploadVideo(call, callback) {
      key(call);
      call.on('data', (msg) => calls.upload.push(msg));
      call.on('end', () => {
        const bytes = calls.upload.filter((m) => m.part === 'chunk').reduce((n, m) => n + m.chunk.length, 0);
        callback(null, { job_id: 'job-1', video_id: 'vid-1', size_bytes: String(bytes) });
      });
    },
    GetJob(call, callback) {
      key(call);
      calls.getJob += 1;
      callback(null, { job: calls.getJob < 3 ? job('JOB_STATE_RUNNING') : job('JOB_STATE_SUCCEEDED', { clips_done: 2, clips_total: 2 }) });
    },
    WatchJob: watchJob || ((call) => {
      key(call);
      for (const state of ['JOB_STATE_QUEUED', 'JOB_STATE_RUNNING', 'JOB_STATE_SUCCEEDED']) call.write({ job: job(state) });
      call.end();
    }),
  });
  server.addService(protos.gateway.SearchService.service, {
    Search(call, callback) {
      key(call);
      calls.search.push(call.request);
      callback(null, {
        model_id: 'tiny', hits: [{ clip_id: 'vid-1:000000000', video_id: 'vid-1', score: 0.5, start_timecode: '00:00:00.000', shard: 'shard-0' }],
      });
    },
  });
  const port = await new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(),
    (err, p) => (err ? reject(err) : resolve(p))));
  return { address: `127.0.0.1:${port}`, calls, server };
}

function tempFile(bytes) {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vidsearch-')), 'clip.mp4');
  fs.writeFileSync(file, bytes);
  return file;
}

test('uploadVideo sends a header first, then chunks of at most 1 MiB that add up to the file', async (t) => {
  const fake = await fakeServer();
  t.after(() => fake.server.forceShutdown());
  const data = crypto.randomBytes(2 * CHUNK_BYTES + 12345);
  const client = new VidsearchClient({ ingest: fake.address, apiKey: API_KEY });
  t.after(() => client.close());
  const reply = await client.uploadVideo(tempFile(data), { videoId: 'vid-1', metadata: { title: 'T', tags: ['a'] } });
  assert.equal(reply.job_id, 'job-1');
  const [first, ...chunks] = fake.calls.upload;
  assert.equal(first.part, 'header');
  assert.equal(first.header.filename, 'clip.mp4');
  assert.equal(first.header.video_id, 'vid-1');
  assert.equal(first.header.size_bytes, String(data.length));
  assert.equal(first.header.metadata.title, 'T');
  assert.ok(chunks.every((m) => m.part === 'chunk' && m.chunk.length <= CHUNK_BYTES));
  assert.equal(chunks.length, 3);
  assert.deepEqual(Buffer.concat(chunks.map((m) => m.chunk)), data);
  assert.deepEqual(fake.calls.keys, [API_KEY]);
});

test('uploadVideo refuses chunks above the 1 MiB contract', () => {
  const client = new VidsearchClient({ ingest: '127.0.0.1:1' });
  assert.throws(() => client.uploadVideo(__filename, { chunkBytes: CHUNK_BYTES + 1 }), RangeError);
  client.close();
});

test('waitForJob follows WatchJob to the final state', async (t) => {
  const fake = await fakeServer();
  t.after(() => fake.server.forceShutdown());
  const client = new VidsearchClient({ ingest: fake.address, apiKey: API_KEY });
  t.after(() => client.close());
  const seen = [];
  const final = await client.waitForJob('job-1', { onUpdate: (j) => seen.push(j.state) });
  assert.equal(final.state, 'JOB_STATE_SUCCEEDED');
  assert.deepEqual(seen, ['JOB_STATE_QUEUED', 'JOB_STATE_RUNNING', 'JOB_STATE_SUCCEEDED']);
  assert.equal(fake.calls.getJob, 0);
});

test('waitForJob polls GetJob when WatchJob is unavailable', async (t) => {
  const fake = await fakeServer({
    watchJob: (call) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'no watch here' }),
  });
  t.after(() => fake.server.forceShutdown());
  const client = new VidsearchClient({ ingest: fake.address });
  t.after(() => client.close());
  const final = await client.waitForJob('job-1', { pollMs: 10 });
  assert.equal(final.state, 'JOB_STATE_SUCCEEDED');
  assert.equal(fake.calls.getJob, 3);
});

test('waitForJob gives up after its timeout', async (t) => {
  const fake = await fakeServer({ watchJob: (call) => call.write({ job: job('JOB_STATE_RUNNING') }) });
  t.after(() => fake.server.forceShutdown());
  const client = new VidsearchClient({ ingest: fake.address });
  t.after(() => client.close());
  await assert.rejects(client.waitForJob('job-1', { timeoutMs: 300 }), /did not finish within 300 ms/);
});

test('search sends the text query, top_k and the API key', async (t) => {
  const fake = await fakeServer();
  t.after(() => fake.server.forceShutdown());
  const client = new VidsearchClient({ gateway: fake.address, apiKey: API_KEY });
  t.after(() => client.close());
  const reply = await client.search('a man on the phone', { topK: 3, language: 'en' });
  assert.equal(reply.hits[0].video_id, 'vid-1');
  assert.equal(fake.calls.search[0].text.text, 'a man on the phone');
  assert.equal(fake.calls.search[0].top_k, 3);
  assert.deepEqual(fake.calls.keys, [API_KEY]);
});

test('the CLI searches and prints JSON, reading the key from the environment', async (t) => {
  const fake = await fakeServer();
  t.after(() => fake.server.forceShutdown());
  const lines = [];
  t.mock.method(console, 'log', (line) => lines.push(line));
  process.env.VIDSEARCH_API_KEY = API_KEY;
  t.after(() => { delete process.env.VIDSEARCH_API_KEY; });
  const code = await main(['--gateway', fake.address, '--json', '--top-k', '2', 'search', 'two', 'words']);
  assert.equal(code, 0);
  assert.equal(JSON.parse(lines[0]).hits[0].clip_id, 'vid-1:000000000');
  assert.equal(fake.calls.search[0].text.text, 'two words');
  assert.deepEqual(fake.calls.keys, [API_KEY]);
});

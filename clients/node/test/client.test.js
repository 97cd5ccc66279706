'use strict';
// The client against in-process fake gateway and ingest servers built from the shipped protos:
// every RPC's request and reply, chunking, API keys, deadlines, and job following.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const grpc = require('@grpc/grpc-js');
const { VidsearchClient, CHUNK_BYTES, status } = require('..');
const { fakeServer, job, tempFile } = require('./fakes');

const API_KEY = 'unit-test-key-0123456789';

/** A fake server and a client of both its services; both closed after the test. */
async function connect(t, overrides, clientOptions = {}) {
  const fake = await fakeServer(overrides);
  t.after(() => fake.server.forceShutdown());
  const client = new VidsearchClient({ gateway: fake.address, ingest: fake.address, apiKey: API_KEY, ...clientOptions });
  t.after(() => client.close());
  return { fake, client };
}

test('search sends the text query, top_k, filter and the API key', async (t) => {
  const { fake, client } = await connect(t);
  const filter = { tags: ['news'], video_ids: ['vid-1'], min_start_seconds: 30 };
  const reply = await client.search('a man on the phone', { topK: 3, language: 'en', filter, collapseByVideo: true });
  assert.equal(reply.hits[0].video_id, 'vid-1');
  assert.equal(reply.model_id, 'tiny');
  const [request] = fake.calls.Search;
  assert.equal(request.query, 'text');
  assert.deepEqual(request.text, { text: 'a man on the phone', language: 'en' });
  assert.equal(request.top_k, 3);
  assert.equal(request.collapse_by_video, true);
  assert.deepEqual(request.filter.tags, ['news']);
  assert.equal(request.filter.min_start_seconds, 30);
  assert.deepEqual(fake.calls.keys, [API_KEY]);
});

test('searchByImage sends the image bytes, from a file or a Buffer', async (t) => {
  const { fake, client } = await connect(t);
  const image = crypto.randomBytes(5000);
  await client.searchByImage(tempFile(image, 'frame.jpg'), { topK: 2 });
  await client.searchByImage(image);
  for (const request of fake.calls.Search) {
    assert.equal(request.query, 'image');
    assert.deepEqual(request.image, image);
  }
  assert.equal(fake.calls.Search[0].top_k, 2);
});

test('searchByClip sends the clip id', async (t) => {
  const { fake, client } = await connect(t);
  const reply = await client.searchByClip('vid-9:000020000');
  assert.equal(fake.calls.Search[0].query, 'clip_id');
  assert.equal(fake.calls.Search[0].clip_id, 'vid-9:000020000');
  assert.equal(reply.hits[0].clip_id, 'vid-9:000020000');
});

test('a query with two kinds is refused before any call', async (t) => {
  const { fake, client } = await connect(t);
  await assert.rejects(client.query({ text: 'a', clipId: 'b' }), /one of text, image, video or clipId/);
  assert.equal(fake.calls.Search.length, 0);
});

test('searchByVideo streams the search first, then chunks of at most 1 MiB', async (t) => {
  const { fake, client } = await connect(t);
  const video = crypto.randomBytes(CHUNK_BYTES + 777);
  const reply = await client.searchByVideo(tempFile(video), { topK: 4, startSeconds: 1.5, endSeconds: 9 });
  assert.equal(reply.hits.length, 1);
  const [[first, ...chunks]] = fake.calls.SearchByVideo;
  assert.equal(first.part, 'search');
  assert.equal(first.search.top_k, 4);
  assert.equal(first.start_seconds, 1.5);
  assert.equal(first.end_seconds, 9);
  assert.equal(chunks.length, 2);
  assert.ok(chunks.every((m) => m.part === 'chunk' && m.chunk.length <= CHUNK_BYTES));
  assert.deepEqual(Buffer.concat(chunks.map((m) => m.chunk)), video);
});

test('batchSearch sends every query in order and resolves to their responses', async (t) => {
  const { fake, client } = await connect(t);
  const image = Buffer.from('png-bytes');
  const responses = await client.batchSearch([
    { text: 'rabbit', topK: 2 }, { clipId: 'vid-2:000000000' }, { image: tempFile(image, 'q.png') },
    { video: tempFile('tiny-video'), startSeconds: 1 },
  ]);
  assert.equal(responses.length, 4);
  assert.equal(responses[1].hits[0].clip_id, 'vid-2:000000000');
  const requests = fake.calls.BatchSearch[0].requests;
  assert.deepEqual(requests.map((r) => r.query), ['text', 'clip_id', 'image', 'video']);
  assert.equal(requests[0].top_k, 2);
  assert.deepEqual(requests[2].image, image);
  assert.equal(requests[3].video.start_seconds, 1);
  assert.equal(requests[3].video.data.toString(), 'tiny-video');
});

test('getThumbnail resolves to the JPEG bytes', async (t) => {
  const { fake, client } = await connect(t);
  const thumbnail = await client.getThumbnail('vid-1:000000000');
  assert.deepEqual(thumbnail.image, Buffer.from([0xff, 0xd8, 0xff]));
  assert.equal(thumbnail.content_type, 'image/jpeg');
  assert.equal(fake.calls.GetThumbnail[0].clip_id, 'vid-1:000000000');
});

test('getClip joins the playback stream; streamClip yields its chunks', async (t) => {
  const { fake, client } = await connect(t);
  const clip = await client.getClip('vid-1:000020000');
  assert.deepEqual(clip, { data: Buffer.from('abcdefg'), content_type: 'video/mp4', start_seconds: 20, end_seconds: 40 });
  const sizes = [];
  for await (const chunk of client.streamClip('vid-1:000020000')) sizes.push(chunk.data.length);
  assert.deepEqual(sizes, [3, 3, 1]);
  assert.equal(fake.calls.GetClip.length, 2);
});

test('leaving a streamClip loop early cancels the call', async (t) => {
  const { fake, client } = await connect(t, {
    GetClip(call) {
      call.on('cancelled', () => fake.calls.cancelled.push('GetClip'));
      const timer = setInterval(() => call.write({ data: Buffer.alloc(10) }), 5);
      call.on('cancelled', () => clearInterval(timer));
    },
  });
  for await (const chunk of client.streamClip('vid-1:000000000')) {
    assert.equal(chunk.data.length, 10);
    break;
  }
  for (let i = 0; i < 100 && fake.calls.cancelled.length === 0; i += 1) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(fake.calls.cancelled, ['GetClip']);
});

test('uploadVideo sends a header first, then chunks of at most 1 MiB that add up to the file', async (t) => {
  const { fake, client } = await connect(t);
  const data = crypto.randomBytes(2 * CHUNK_BYTES + 12345);
  const segment = { mode: 'SEGMENT_MODE_SHOTS', window_seconds: 10 };
  const reply = await client.uploadVideo(tempFile(data), { videoId: 'vid-1', metadata: { title: 'T', tags: ['a'] }, segment });
  assert.equal(reply.job_id, 'job-1');
  assert.equal(reply.size_bytes, String(data.length));
  const [[first, ...chunks]] = fake.calls.UploadVideo;
  assert.equal(first.part, 'header');
  assert.equal(first.header.filename, 'clip.mp4');
  assert.equal(first.header.video_id, 'vid-1');
  assert.equal(first.header.size_bytes, String(data.length));
  assert.equal(first.header.metadata.title, 'T');
  assert.equal(first.header.segment.mode, 'SEGMENT_MODE_SHOTS');
  assert.ok(chunks.every((m) => m.part === 'chunk' && m.chunk.length <= CHUNK_BYTES));
  assert.equal(chunks.length, 3);
  assert.deepEqual(Buffer.concat(chunks.map((m) => m.chunk)), data);
  assert.deepEqual(fake.calls.keys, [API_KEY]);
});

test('uploadVideo takes bytes too, named by the filename option', async (t) => {
  const { fake, client } = await connect(t);
  const data = crypto.randomBytes(1000);
  await client.uploadVideo(data, { filename: 'from-memory.webm', chunkBytes: 300 });
  const [[first, ...chunks]] = fake.calls.UploadVideo;
  assert.equal(first.header.filename, 'from-memory.webm');
  assert.deepEqual(chunks.map((m) => m.chunk.length), [300, 300, 300, 100]);
});

test('uploadVideo refuses chunks above the 1 MiB contract', () => {
  const client = new VidsearchClient({ ingest: '127.0.0.1:1' });
  assert.throws(() => client.uploadVideo(__filename, { chunkBytes: CHUNK_BYTES + 1 }), RangeError);
  client.close();
});

test('an upload the server refuses early rejects with its status', async (t) => {
  const { client } = await connect(t, {
    UploadVideo(call, callback) {
      call.once('data', () => callback({ code: status.PERMISSION_DENIED, details: 'role read may not call UploadVideo' }));
    },
  });
  await assert.rejects(client.uploadVideo(crypto.randomBytes(3 * CHUNK_BYTES)),
    (err) => err.code === status.PERMISSION_DENIED && /may not/.test(err.details));
});

test('submitVideo, getJob, cancelJob and deleteVideo send their ids', async (t) => {
  const { fake, client } = await connect(t);
  const submitted = await client.submitVideo('/media/a.mp4', { videoId: 'a', metadata: { programme: 'P' } });
  assert.deepEqual(submitted, { job_id: 'job-1', video_id: 'a' });
  assert.equal(fake.calls.SubmitVideo[0].uri, '/media/a.mp4');
  assert.equal(fake.calls.SubmitVideo[0].metadata.programme, 'P');
  assert.equal((await client.getJob('job-1')).state, 'JOB_STATE_RUNNING');
  assert.equal((await client.cancelJob('job-1')).state, 'JOB_STATE_CANCELLED');
  assert.equal(fake.calls.CancelJob[0].job_id, 'job-1');
  assert.equal((await client.deleteVideo('a')).clips_deleted, 7);
  assert.equal(fake.calls.DeleteVideo[0].video_id, 'a');
  assert.deepEqual(fake.calls.keys, [API_KEY, API_KEY, API_KEY, API_KEY]);
});

test('watchJob yields every state and ends with the final one', async (t) => {
  const { client } = await connect(t);
  const seen = [];
  for await (const j of client.watchJob('job-1')) seen.push(j.state);
  assert.deepEqual(seen, ['JOB_STATE_QUEUED', 'JOB_STATE_RUNNING', 'JOB_STATE_SUCCEEDED']);
});

test('waitForJob follows WatchJob to the final state', async (t) => {
  const { fake, client } = await connect(t);
  const seen = [];
  const final = await client.waitForJob('job-1', { onUpdate: (j) => seen.push(j.state) });
  assert.equal(final.state, 'JOB_STATE_SUCCEEDED');
  assert.deepEqual(seen, ['JOB_STATE_QUEUED', 'JOB_STATE_RUNNING', 'JOB_STATE_SUCCEEDED']);
  assert.equal(fake.calls.GetJob.length, 0);
});

test('waitForJob polls GetJob when WatchJob is unavailable', async (t) => {
  const { fake, client } = await connect(t, {
    WatchJob: (call) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'no watch here' }),
  });
  const final = await client.waitForJob('job-1', { pollMs: 10 });
  assert.equal(final.state, 'JOB_STATE_SUCCEEDED');
  assert.equal(fake.calls.GetJob.length, 3);
});

test('waitForJob gives up after its timeout', async (t) => {
  const { client } = await connect(t, { WatchJob: (call) => call.write({ job: job('JOB_STATE_RUNNING') }) });
  await assert.rejects(client.waitForJob('job-1', { timeoutMs: 300 }), /did not finish within 300 ms/);
});

test('every call carries a deadline: a server that never answers gives DEADLINE_EXCEEDED', async (t) => {
  const silent = () => {};
  const { client } = await connect(t, { Search: silent, GetJob: silent, GetClip: silent, UploadVideo: silent },
    { deadlineMs: 200, streamDeadlineMs: 300 });
  const exceeded = (err) => err.code === status.DEADLINE_EXCEEDED;
  await assert.rejects(client.search('x'), exceeded);
  await assert.rejects(client.getJob('job-1'), exceeded);
  await assert.rejects(client.getClip('vid-1:000000000'), exceeded);
  await assert.rejects(client.uploadVideo(Buffer.from('x')), exceeded);
  await assert.rejects(client.search('x', { deadlineMs: 50 }), exceeded);
});

test('a call to a service without an address says which address is missing', async () => {
  const client = new VidsearchClient({ gateway: '127.0.0.1:1' });
  await assert.rejects(async () => client.getJob('job-1'), /no ingest address was given/);
  client.close();
});

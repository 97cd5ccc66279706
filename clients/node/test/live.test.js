'use strict';
// The installed package against a live stack with TLS and API keys on, as a Node.js user runs it:
// tests/deploy/test_node_client.py packs the package, installs the tarball into an empty project,
// copies this file there and runs it with the stack's settings in VIDSEARCH_CLIENT_* (the
// variables the CLI reads) and the test inputs in VIDSEARCH_TEST_*. Not run by `npm test`.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { VidsearchClient, TlsSetupError, CHUNK_BYTES, status } = require('@vidsearch/client');

const env = process.env;
const CLI = path.join(__dirname, 'node_modules', '.bin', 'vidsearch-node');
const TLS = {
  caFile: env.VIDSEARCH_CLIENT_TLS_CA_FILE,
  certFile: env.VIDSEARCH_CLIENT_TLS_CERT_FILE,
  keyFile: env.VIDSEARCH_CLIENT_TLS_KEY_FILE,
  serverName: env.VIDSEARCH_CLIENT_TLS_SERVER_NAME,
};
const readKey = (file) => fs.readFileSync(file, 'utf8').trim();
const RUN = `node-live-${process.pid}`;

function connect(t, { apiKey = readKey(env.VIDSEARCH_CLIENT_API_KEY_FILE), tls = TLS } = {}) {
  const client = new VidsearchClient({
    gateway: env.VIDSEARCH_CLIENT_GATEWAY_ADDRESS, ingest: env.VIDSEARCH_CLIENT_INGEST_ADDRESS, apiKey, tls, deadlineMs: 60000,
  });
  t.after(() => client.close());
  return client;
}

/** "More like this" answers with other clips: the query clip itself is left out. */
function assertMoreLikeThis(reply, clipId) {
  assert.ok(reply.hits.length > 0, 'no similar clips (the submitted video should be one)');
  assert.ok(!reply.hits.some((h) => h.clip_id === clipId), `${clipId} is among its own similar clips`);
}

const hitsOf = (reply, videoId) => reply.hits.filter((h) => h.video_id === videoId);
const cli = (args, extraEnv = {}) => promisify(execFile)(CLI, args, { env: { ...env, ...extraEnv } })
  .then(({ stdout }) => ({ code: 0, stdout, stderr: '' }), (err) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }));

test('the package, installed from its tarball, searches and ingests over TLS with API keys', { timeout: 400000 }, async (t) => {
  for (const name of ['VIDSEARCH_CLIENT_GATEWAY_ADDRESS', 'VIDSEARCH_CLIENT_INGEST_ADDRESS', 'VIDSEARCH_CLIENT_API_KEY_FILE',
    'VIDSEARCH_CLIENT_TLS_CA_FILE', 'VIDSEARCH_TEST_VIDEO', 'VIDSEARCH_TEST_QUEUED_VIDEO', 'VIDSEARCH_TEST_SUBMIT_VIDEO']) {
    assert.ok(env[name], `${name} is not set (tests/deploy/test_node_client.py sets it)`);
  }
  const client = connect(t);
  const videoId = `${RUN}-upload`;
  const queuedId = `${RUN}-cancelled`;
  let job;
  let clipId;
  let thumbnail;

  await t.test('upload a real video, and cancel a second one queued behind it', async () => {
    const upload = await client.uploadVideo(env.VIDSEARCH_TEST_VIDEO, { videoId, metadata: { title: 'node live test', tags: ['node'] } });
    assert.equal(upload.video_id, videoId);
    assert.ok(Number(upload.size_bytes) > CHUNK_BYTES, 'the test video should span more than one chunk');
    // One ingest worker: the second job waits while the first runs, so it is still queued.
    const queued = await client.uploadVideo(fs.readFileSync(env.VIDSEARCH_TEST_QUEUED_VIDEO), { videoId: queuedId, filename: 'queued.mp4' });
    const cancelled = await client.cancelJob(queued.job_id);
    assert.equal(cancelled.state, 'JOB_STATE_CANCELLED');
    assert.equal((await client.getJob(queued.job_id)).state, 'JOB_STATE_CANCELLED');
    const states = [];
    for await (const update of client.watchJob(upload.job_id)) states.push(update.state);
    assert.equal(states.at(-1), 'JOB_STATE_SUCCEEDED', `states seen: ${states}`);
    job = await client.getJob(upload.job_id);
    assert.equal(job.state, 'JOB_STATE_SUCCEEDED', job.error);
    assert.ok(job.clips_done > 0 && job.clips_done === job.clips_total, `clips ${job.clips_done}/${job.clips_total}`);
  });

  await t.test('submit a video on the server\'s storage and wait for it', async () => {
    const submitted = await client.submitVideo(env.VIDSEARCH_TEST_SUBMIT_VIDEO, { videoId: `${RUN}-submitted` });
    assert.equal(submitted.video_id, `${RUN}-submitted`);
    const done = await client.waitForJob(submitted.job_id, { timeoutMs: 240000 });
    assert.equal(done.state, 'JOB_STATE_SUCCEEDED', done.error);
  });

  await t.test('search by text finds the uploaded video with its metadata', async () => {
    const reply = await client.search('a rabbit in a meadow', { topK: 50, filter: { video_ids: [videoId] } });
    assert.ok(reply.model_id);
    assert.equal(reply.partial, false);
    const ours = hitsOf(reply, videoId);
    assert.ok(ours.length > 0 && ours.length === reply.hits.length, `hits: ${reply.hits.map((h) => h.video_id)}`);
    assert.equal(ours[0].metadata.title, 'node live test');
    assert.equal(hitsOf(await client.search('anything', { topK: 50 }), queuedId).length, 0, 'the cancelled video has clips');
    clipId = ours[0].clip_id;
  });

  await t.test('search by clip id finds the other clips', async () => {
    const reply = await client.searchByClip(clipId, { topK: 5 });
    assertMoreLikeThis(reply, clipId);
  });

  await t.test('thumbnail, then search by that image', async () => {
    thumbnail = await client.getThumbnail(clipId);
    assert.equal(thumbnail.content_type, 'image/jpeg');
    assert.deepEqual([...thumbnail.image.subarray(0, 2)], [0xff, 0xd8], 'not a JPEG');
    const reply = await client.searchByImage(thumbnail.image, { topK: 5 });
    assert.ok(reply.hits.length > 0);
  });

  await t.test('search by a video stream', async () => {
    const reply = await client.searchByVideo(env.VIDSEARCH_TEST_VIDEO, { topK: 5, startSeconds: 0, endSeconds: 3 });
    assert.ok(reply.hits.length > 0);
  });

  await t.test('batch search answers every query in order', async () => {
    const responses = await client.batchSearch([{ text: '토끼', language: 'ko', topK: 3 }, { clipId, topK: 5 }, { image: thumbnail.image }]);
    assert.equal(responses.length, 3);
    assertMoreLikeThis(responses[1], clipId);
    assert.ok(responses.every((r) => r.hits.length > 0));
  });

  await t.test('the playback stream is an MP4 of the clip\'s time range', async () => {
    let first = null;
    const parts = [];
    for await (const chunk of client.streamClip(clipId)) {
      first = first || chunk;
      parts.push(chunk.data);
    }
    assert.equal(first.content_type, 'video/mp4');
    const mp4 = Buffer.concat(parts);
    assert.equal(mp4.subarray(4, 8).toString('latin1'), 'ftyp', 'not an MP4');
    const clip = await client.getClip(clipId);
    assert.equal(clip.data.length, mp4.length);
    assert.ok(clip.end_seconds > clip.start_seconds);
  });

  await t.test('a read key searches but may not upload; no key is unauthenticated', async (st) => {
    const reader = connect(st, { apiKey: readKey(env.VIDSEARCH_TEST_READ_KEY_FILE) });
    assert.ok((await reader.search('rabbit', { topK: 1 })).hits.length > 0);
    await assert.rejects(reader.uploadVideo(env.VIDSEARCH_TEST_VIDEO, { videoId: `${RUN}-denied` }),
      (err) => err.code === status.PERMISSION_DENIED);
    await assert.rejects(reader.deleteVideo(videoId), (err) => err.code === status.PERMISSION_DENIED);
    await assert.rejects(connect(st, { apiKey: '' }).search('rabbit'), (err) => err.code === status.UNAUTHENTICATED);
  });

  await t.test('TLS that cannot be set up, or a server the CA did not sign, is an error', async (st) => {
    const notPem = path.join(__dirname, 'not-a-ca.pem');
    fs.writeFileSync(notPem, 'not a certificate\n');
    assert.throws(() => connect(st, { tls: { ...TLS, caFile: notPem } }), TlsSetupError);
    await assert.rejects(connect(st, { tls: { ...TLS, caFile: env.VIDSEARCH_TEST_OTHER_CA_FILE } }).search('rabbit'),
      (err) => err.code === status.UNAVAILABLE);
    await assert.rejects(connect(st, { tls: false }).search('rabbit'), (err) => err.code === status.UNAVAILABLE,
      'plaintext must not reach a TLS server');
  });

  await t.test('the CLI reads VIDSEARCH_CLIENT_* and fails clearly on a bad CA or a read key', async () => {
    const search = await cli(['--json', '--top-k', '3', 'search', 'a rabbit']);
    assert.equal(search.code, 0, search.stderr);
    assert.ok(JSON.parse(search.stdout).hits.length > 0);
    const badCa = await cli(['--tls-ca', path.join(__dirname, 'not-a-ca.pem'), 'search', 'a rabbit']);
    assert.equal(badCa.code, 1);
    assert.match(badCa.stderr, /TLS was requested but cannot be set up/);
    const denied = await cli(['--api-key-file', env.VIDSEARCH_TEST_READ_KEY_FILE, 'upload', env.VIDSEARCH_TEST_VIDEO]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /PERMISSION_DENIED/);
    const shown = await cli(['--json', 'job', job.job_id]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(JSON.parse(shown.stdout).state, 'JOB_STATE_SUCCEEDED');
  });

  await t.test('delete removes every clip of the video', async () => {
    const reply = await client.deleteVideo(videoId);
    assert.equal(reply.clips_deleted, job.clips_total);
    const after = await client.search('a rabbit in a meadow', { topK: 50, filter: { video_ids: [videoId] } });
    assert.equal(after.hits.length, 0);
  });
});

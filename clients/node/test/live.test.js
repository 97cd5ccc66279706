'use strict';
// The client against a running stack (started by tests/deploy/test_node_client.py):
// upload a real video, wait for its ingest job, find it by text search; then the CLI.
// Needs VIDSEARCH_GATEWAY, VIDSEARCH_INGEST and VIDSEARCH_TEST_VIDEO; VIDSEARCH_API_KEY when the
// stack requires keys.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { VidsearchClient, CHUNK_BYTES } = require('../src/client');

const { VIDSEARCH_GATEWAY: gateway, VIDSEARCH_INGEST: ingest, VIDSEARCH_TEST_VIDEO: video } = process.env;
const CLI = path.join(__dirname, '..', 'bin', 'vidsearch.js');

test('live stack addresses are given', () => {
  assert.ok(gateway && ingest && video,
    'set VIDSEARCH_GATEWAY, VIDSEARCH_INGEST and VIDSEARCH_TEST_VIDEO (tests/deploy/test_node_client.py does)');
});

test('upload, wait for the job, then find the video by text', { timeout: 300000 }, async (t) => {
  const client = new VidsearchClient({ gateway, ingest, apiKey: process.env.VIDSEARCH_API_KEY });
  t.after(() => client.close());
  const videoId = `node-live-${process.pid}`;
  const upload = await client.uploadVideo(video, { videoId, metadata: { title: 'node live test', tags: ['node'] } });
  assert.equal(upload.video_id, videoId);
  assert.ok(Number(upload.size_bytes) > CHUNK_BYTES, 'the test video should span more than one chunk');
  const states = [];
  const job = await client.waitForJob(upload.job_id, { timeoutMs: 240000, onUpdate: (j) => states.push(j.state) });
  assert.equal(job.state, 'JOB_STATE_SUCCEEDED', `job ended ${job.state}: ${job.error}`);
  assert.ok(job.clips_done > 0 && job.clips_done === job.clips_total, `clips ${job.clips_done}/${job.clips_total}`);
  const reply = await client.search('a rabbit in a meadow', { topK: 50 });
  assert.ok(reply.model_id);
  assert.equal(reply.partial, false);
  const ours = reply.hits.filter((h) => h.video_id === videoId);
  assert.ok(ours.length > 0, `no hit of ${videoId} among ${reply.hits.map((h) => h.video_id)}`);
  assert.equal(ours[0].metadata.title, 'node live test');
});

test('the CLI searches the live gateway', { timeout: 60000 }, async () => {
  const { stdout } = await promisify(execFile)(process.execPath,
    [CLI, '--gateway', gateway, '--json', '--top-k', '5', 'search', 'a rabbit'], { env: process.env });
  const reply = JSON.parse(stdout);
  assert.ok(reply.hits.length > 0);
});

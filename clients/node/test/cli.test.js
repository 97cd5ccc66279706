'use strict';
// The command line against the fake servers: its commands, and where its settings come from
// (flag > VIDSEARCH_CLIENT_* environment > default; key file > key variable).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const grpc = require('@grpc/grpc-js');
const { main, clientOptions } = require('../bin/vidsearch');
const { fakeServer, tempDir, tempFile, testCertificates } = require('./fakes');

const CLI = path.join(__dirname, '..', 'bin', 'vidsearch.js');
const ORIGINAL_ENV = { ...process.env };
test.afterEach(() => { process.env = { ...ORIGINAL_ENV }; });

/** Replaces every VIDSEARCH_CLIENT_* variable with `env` (until the end of the test). */
function withEnv(env) {
  for (const k of Object.keys(process.env)) if (k.startsWith('VIDSEARCH_CLIENT_')) delete process.env[k];
  Object.assign(process.env, env);
}

/** Runs main() with console output captured; resolves to {code, out, err}. */
async function cli(t, args) {
  const out = [];
  const err = [];
  const log = t.mock.method(console, 'log', (line) => out.push(line));
  const error = t.mock.method(console, 'error', (line) => err.push(line));
  try {
    return { code: await main(args), out, err: err.join('\n') };
  } finally {
    log.mock.restore();
    error.mock.restore();
  }
}

async function fake(t) {
  const server = await fakeServer();
  t.after(() => server.server.forceShutdown());
  return server;
}

function keyFile(key) {
  return tempFile(`${key}\n`, 'api-key');
}

test('addresses: flag over VIDSEARCH_CLIENT_*_ADDRESS over the local default', (t) => {
  withEnv({});
  assert.equal(clientOptions({}).gateway, '127.0.0.1:50051');
  assert.equal(clientOptions({}).ingest, '127.0.0.1:50052');
  withEnv({ VIDSEARCH_CLIENT_GATEWAY_ADDRESS: 'env-gw:1', VIDSEARCH_CLIENT_INGEST_ADDRESS: 'env-in:2' });
  assert.equal(clientOptions({}).gateway, 'env-gw:1');
  assert.equal(clientOptions({}).ingest, 'env-in:2');
  assert.equal(clientOptions({ gateway: 'flag-gw:3', ingest: 'flag-in:4' }).gateway, 'flag-gw:3');
  assert.equal(clientOptions({ gateway: 'flag-gw:3', ingest: 'flag-in:4' }).ingest, 'flag-in:4');
});

test('API key: --api-key-file over VIDSEARCH_CLIENT_API_KEY_FILE over VIDSEARCH_CLIENT_API_KEY', (t) => {
  withEnv({});
  assert.equal(clientOptions({}).apiKey, undefined);
  withEnv({ VIDSEARCH_CLIENT_API_KEY: 'from-variable-0123456789' });
  assert.equal(clientOptions({}).apiKey, 'from-variable-0123456789');
  process.env.VIDSEARCH_CLIENT_API_KEY_FILE = keyFile('from-env-file-0123456789');
  assert.equal(clientOptions({}).apiKey, 'from-env-file-0123456789');
  assert.equal(clientOptions({ 'api-key-file': keyFile('from-flag-file-0123456789') }).apiKey, 'from-flag-file-0123456789');
  assert.throws(() => clientOptions({ 'api-key-file': keyFile('') }), /is empty/);
});

test('TLS: off unless a --tls-* flag or VIDSEARCH_CLIENT_TLS_* variable is set; flags win', (t) => {
  withEnv({});
  assert.equal(clientOptions({}).tls, undefined);
  withEnv({ VIDSEARCH_CLIENT_TLS_SERVER_NAME: 'env.example.com', VIDSEARCH_CLIENT_TLS_CA_FILE: '/env/ca.crt' });
  assert.deepEqual(clientOptions({}).tls, { caFile: '/env/ca.crt', certFile: undefined, keyFile: undefined, serverName: 'env.example.com' });
  withEnv({ VIDSEARCH_CLIENT_TLS_CERT_FILE: '/env/c.crt', VIDSEARCH_CLIENT_TLS_KEY_FILE: '/env/c.key' });
  const tls = clientOptions({ 'tls-ca': '/flag/ca.crt', 'tls-cert': '/flag/c.crt', 'tls-server-name': 'flag.example.com' }).tls;
  assert.deepEqual(tls, { caFile: '/flag/ca.crt', certFile: '/flag/c.crt', keyFile: '/env/c.key', serverName: 'flag.example.com' });
});

test('search prints JSON, sending the key from the environment', async (t) => {
  const server = await fake(t);
  withEnv({ VIDSEARCH_CLIENT_API_KEY: 'cli-env-key-0123456789', VIDSEARCH_CLIENT_GATEWAY_ADDRESS: server.address });
  const { code, out, err } = await cli(t, ['--json', '--top-k', '2', '--collapse', 'search', 'two', 'words']);
  assert.equal(err, '');
  assert.equal(code, 0);
  assert.equal(JSON.parse(out[0]).hits[0].clip_id, 'vid-1:000000000');
  assert.equal(server.calls.Search[0].text.text, 'two words');
  assert.equal(server.calls.Search[0].top_k, 2);
  assert.equal(server.calls.Search[0].collapse_by_video, true);
  assert.deepEqual(server.calls.keys, ['cli-env-key-0123456789']);
});

test('search-image, search-video and similar send their queries', async (t) => {
  const server = await fake(t);
  withEnv({});
  const gw = ['--gateway', server.address];
  assert.equal((await cli(t, [...gw, 'search-image', tempFile('img', 'q.jpg')])).code, 0);
  assert.equal((await cli(t, [...gw, '--start', '2', '--end', '5', 'search-video', tempFile('vid')])).code, 0);
  assert.equal((await cli(t, [...gw, 'similar', 'vid-1:000000000'])).code, 0);
  assert.deepEqual(server.calls.Search.map((r) => r.query), ['image', 'clip_id']);
  assert.equal(server.calls.SearchByVideo[0][0].end_seconds, 5);
});

test('thumbnail and clip write their bytes to --out', async (t) => {
  const server = await fake(t);
  withEnv({});
  const dir = tempDir();
  const gw = ['--gateway', server.address];
  assert.equal((await cli(t, [...gw, '--out', path.join(dir, 't.jpg'), 'thumbnail', 'vid-1:000000000'])).code, 0);
  assert.deepEqual(fs.readFileSync(path.join(dir, 't.jpg')), Buffer.from([0xff, 0xd8, 0xff]));
  const clip = await cli(t, [...gw, '--json', '--out', path.join(dir, 'c.mp4'), 'clip', 'vid-1:000000000']);
  assert.equal(clip.code, 0);
  assert.equal(fs.readFileSync(path.join(dir, 'c.mp4'), 'utf8'), 'abcdefg');
  assert.deepEqual(JSON.parse(clip.out[0]), { content_type: 'video/mp4', start_seconds: 20, end_seconds: 40, size_bytes: 7 });
  assert.equal((await cli(t, [...gw, 'thumbnail', 'vid-1:000000000'])).code, 2, '--out is required');
});

test('upload --wait, submit, job, cancel and delete go to ingest', async (t) => {
  const server = await fake(t);
  withEnv({ VIDSEARCH_CLIENT_INGEST_ADDRESS: server.address });
  const upload = await cli(t, ['--wait', '--title', 'T', '--tag', 'a', '--tag', 'b', 'upload', tempFile('video-bytes')]);
  assert.equal(upload.code, 0);
  assert.match(upload.out[0], /job-1 {2}JOB_STATE_SUCCEEDED/);
  assert.deepEqual(server.calls.UploadVideo[0][0].header.metadata.tags, ['a', 'b']);
  assert.equal((await cli(t, ['--video-id', 'v', 'submit', '/media/v.mp4'])).code, 0);
  assert.equal(server.calls.SubmitVideo[0].video_id, 'v');
  assert.equal((await cli(t, ['job', 'job-1'])).code, 0);
  assert.match((await cli(t, ['cancel', 'job-1'])).out[0], /JOB_STATE_CANCELLED/);
  assert.match((await cli(t, ['delete', 'v'])).out[0], /deleted 7 clips of v/);
});

test('usage mistakes exit 2; failed calls exit 1 with the status', async (t) => {
  withEnv({});
  assert.equal((await cli(t, ['search'])).code, 2);
  assert.equal((await cli(t, ['frobnicate', 'x'])).code, 2);
  assert.equal((await cli(t, ['--api-key', 'k', 'search', 'x'])).code, 2, 'there is no --api-key flag');
  const down = await cli(t, ['--gateway', '127.0.0.1:1', 'search', 'x']);
  assert.equal(down.code, 1);
  assert.match(down.err, /UNAVAILABLE/);
});

test('--tls-ca with a file that is not a certificate is an error, not plaintext', async (t) => {
  const server = await fake(t);
  withEnv({});
  const { code, err } = await cli(t, ['--gateway', server.address, '--tls-ca', tempFile('junk', 'ca.pem'), 'search', 'x']);
  assert.equal(code, 1);
  assert.match(err, /TLS was requested but cannot be set up: .*holds no PEM certificate/);
  assert.equal(server.calls.Search.length, 0);
});

test('--tls-server-name alone verifies against the system trust store (with NODE_EXTRA_CA_CERTS)', async (t) => {
  const certs = testCertificates();
  const credentials = grpc.ServerCredentials.createSsl(null,
    [{ private_key: fs.readFileSync(certs.serverKey), cert_chain: fs.readFileSync(certs.serverCert) }]);
  const server = await fakeServer({}, credentials);
  t.after(() => server.server.forceShutdown());
  withEnv({});
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: certs.ca };
  const { stdout } = await promisify(execFile)(process.execPath,
    [CLI, '--gateway', server.address, '--tls-server-name', 'search.example.com', '--json', 'search', 'x'], { env });
  assert.equal(JSON.parse(stdout).model_id, 'tiny');
});

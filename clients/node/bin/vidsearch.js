#!/usr/bin/env node
'use strict';
/**
 * Command line for the Node.js client: search (text, image, video, similar clips), thumbnails
 * and clip playback through the gateway; upload, submit, jobs and deletion through ingest.
 * Settings: flag, then VIDSEARCH_CLIENT_* environment, then the local default (the names the
 * Python CLI uses too). The API key is never an argument (which `ps` would show).
 */
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { VidsearchClient } = require('../src/client');

const USAGE = `usage: vidsearch-node [options] COMMAND ARG
commands:
  search TEXT...        search by a sentence
  search-image FILE     search by an image
  search-video FILE     search by a video (--start/--end pick the part)
  similar CLIP_ID       clips like an indexed clip
  thumbnail CLIP_ID     write the clip's thumbnail JPEG to --out
  clip CLIP_ID          write the clip's video (MP4) to --out
  upload FILE           upload a video and queue it for ingest
  submit URI            queue a video the ingest service can read
  job JOB_ID            show a job (--wait: until it is final)
  cancel JOB_ID         cancel a queued or running job
  delete VIDEO_ID       remove every clip of a video
connection (flag, else environment):
  --gateway ADDR          VIDSEARCH_CLIENT_GATEWAY_ADDRESS (default 127.0.0.1:50051)
  --ingest ADDR           VIDSEARCH_CLIENT_INGEST_ADDRESS (default 127.0.0.1:50052)
  --api-key-file FILE     VIDSEARCH_CLIENT_API_KEY_FILE, else the key in VIDSEARCH_CLIENT_API_KEY
  --tls-ca FILE           VIDSEARCH_CLIENT_TLS_CA_FILE: CA to verify the server with
  --tls-cert FILE         VIDSEARCH_CLIENT_TLS_CERT_FILE: client certificate (mutual TLS)
  --tls-key FILE          VIDSEARCH_CLIENT_TLS_KEY_FILE: client key (mutual TLS)
  --tls-server-name NAME  VIDSEARCH_CLIENT_TLS_SERVER_NAME: name the server certificate must carry
  Any --tls-* setting turns TLS on; without --tls-ca the system trust store verifies the server.
options:
  --top-k N             search: number of hits (default 10)
  --language CODE       search: language hint, e.g. ko
  --collapse            search: at most one hit per video
  --start S, --end S    search-video: part of the video to search with, seconds
  --out FILE            thumbnail, clip: where to write (- for stdout)
  --video-id ID         upload, submit: stable video id (default: derived from the content)
  --title T, --tag TAG  upload, submit: metadata stored with every clip
  --wait                upload, submit, job: wait until the job is final
  --timeout SECONDS     upload, submit, job: how long --wait waits (default 600)
  --json                print replies as JSON`;

const OPTIONS = {
  gateway: { type: 'string' },
  ingest: { type: 'string' },
  'api-key-file': { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-server-name': { type: 'string' },
  'top-k': { type: 'string', default: '10' },
  language: { type: 'string', default: '' },
  collapse: { type: 'boolean', default: false },
  start: { type: 'string', default: '0' },
  end: { type: 'string', default: '0' },
  out: { type: 'string' },
  'video-id': { type: 'string', default: '' },
  title: { type: 'string' },
  tag: { type: 'string', multiple: true, default: [] },
  wait: { type: 'boolean', default: false },
  timeout: { type: 'string', default: '600' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
};

/** A usage mistake: printed with the usage, exit status 2. */
class UsageError extends Error {}

/** flag > environment (empty counts as unset) > fallback. */
function setting(values, flag, env, fallback = undefined) {
  return values[flag] || process.env[env] || fallback;
}

function apiKey(values) {
  const file = setting(values, 'api-key-file', 'VIDSEARCH_CLIENT_API_KEY_FILE');
  if (!file) return process.env.VIDSEARCH_CLIENT_API_KEY || undefined;
  const key = fs.readFileSync(file, 'utf8').trim();
  if (!key) throw new Error(`the API key file ${file} is empty`);
  return key;
}

/** The client's options from flags and VIDSEARCH_CLIENT_* variables. */
function clientOptions(values) {
  const tls = {
    caFile: setting(values, 'tls-ca', 'VIDSEARCH_CLIENT_TLS_CA_FILE'),
    certFile: setting(values, 'tls-cert', 'VIDSEARCH_CLIENT_TLS_CERT_FILE'),
    keyFile: setting(values, 'tls-key', 'VIDSEARCH_CLIENT_TLS_KEY_FILE'),
    serverName: setting(values, 'tls-server-name', 'VIDSEARCH_CLIENT_TLS_SERVER_NAME'),
  };
  return {
    gateway: setting(values, 'gateway', 'VIDSEARCH_CLIENT_GATEWAY_ADDRESS', '127.0.0.1:50051'),
    ingest: setting(values, 'ingest', 'VIDSEARCH_CLIENT_INGEST_ADDRESS', '127.0.0.1:50052'),
    apiKey: apiKey(values),
    tls: Object.values(tls).some(Boolean) ? tls : undefined,
  };
}

function formatHit(hit, rank) {
  const title = hit.metadata && hit.metadata.title ? `  ${hit.metadata.title}` : '';
  return `${String(rank + 1).padStart(3)}  ${hit.score.toFixed(4)}  ${hit.clip_id} @ ${hit.start_timecode}  [${hit.shard}]${title}`;
}

function formatResponse(reply) {
  return reply.hits.map(formatHit).join('\n') + (reply.partial ? `\n(partial: ${reply.failed_shards})` : '');
}

function formatJob(job) {
  const error = job.error ? `  error: ${job.error}` : '';
  return `${job.job_id}  ${job.state}  ${job.stage}  clips ${job.clips_done}/${job.clips_total}${error}`;
}

function number(values, name) {
  const value = Number(values[name]);
  if (!Number.isFinite(value)) throw new UsageError(`--${name} must be a number, got ${values[name]}`);
  return value;
}

function writeOut(values, data) {
  if (values.out === '-') process.stdout.write(data);
  else fs.writeFileSync(values.out, data);
}

/** Runs one command; resolves to the process exit status. */
async function run(client, command, args, values) {
  const print = (reply, text) => console.log(values.json ? JSON.stringify(reply) : text);
  const search = { topK: number(values, 'top-k'), collapseByVideo: values.collapse };
  const timeoutMs = number(values, 'timeout') * 1000;
  const ingestOptions = () => {
    const metadata = { tags: values.tag };
    if (values.title) metadata.title = values.title;
    return { videoId: values['video-id'], metadata };
  };
  const queued = async (reply) => {
    if (!values.wait) {
      const size = reply.size_bytes ? ` (${reply.size_bytes} bytes)` : '';
      print(reply, `queued job ${reply.job_id} for video ${reply.video_id}${size}`);
      return 0;
    }
    const job = await client.waitForJob(reply.job_id, { timeoutMs });
    print(job, formatJob(job));
    return job.state === 'JOB_STATE_SUCCEEDED' ? 0 : 1;
  };
  const searches = {
    search: () => client.search(args.join(' '), { ...search, language: values.language }),
    'search-image': () => client.searchByImage(args[0], search),
    'search-video': () => client.searchByVideo(args[0], { ...search, startSeconds: number(values, 'start'), endSeconds: number(values, 'end') }),
    similar: () => client.searchByClip(args[0], search),
  };
  if (Object.hasOwn(searches, command)) {
    const reply = await searches[command]();
    print(reply, formatResponse(reply));
    return 0;
  }
  switch (command) {
    case 'thumbnail': {
      if (!values.out) throw new UsageError('--out FILE is required (- for stdout)');
      writeOut(values, (await client.getThumbnail(args[0])).image);
      return 0;
    }
    case 'clip': {
      if (!values.out) throw new UsageError('--out FILE is required (- for stdout)');
      const clip = await client.getClip(args[0]);
      writeOut(values, clip.data);
      if (values.out !== '-') {
        const { data, ...info } = clip;
        print({ ...info, size_bytes: data.length }, `${values.out}: ${data.length} bytes of ${clip.content_type}, `
          + `${clip.start_seconds}-${clip.end_seconds} s`);
      }
      return 0;
    }
    case 'upload':
      return queued(await client.uploadVideo(args[0], ingestOptions()));
    case 'submit':
      return queued(await client.submitVideo(args[0], ingestOptions()));
    case 'job': {
      const job = values.wait ? await client.waitForJob(args[0], { timeoutMs }) : await client.getJob(args[0]);
      print(job, formatJob(job));
      return job.state === 'JOB_STATE_FAILED' ? 1 : 0;
    }
    case 'cancel': {
      const job = await client.cancelJob(args[0]);
      print(job, formatJob(job));
      return 0;
    }
    case 'delete': {
      const reply = await client.deleteVideo(args[0]);
      print(reply, `deleted ${reply.clips_deleted} clips of ${args[0]}`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

async function main(argv) {
  let client;
  try {
    const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
    const [command, ...args] = positionals;
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (!command || args.length === 0) throw new UsageError('a command and its argument are required');
    client = new VidsearchClient(clientOptions(values));
    return await run(client, command, args, values);
  } catch (err) {
    if (err instanceof UsageError || (err.code && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
      console.error(`${err.message}\n(vidsearch-node --help shows the usage)`);
      return 2;
    }
    console.error(`error: ${err.message}`); // grpc-js: "<code> <NAME>: <details>"
    return 1;
  } finally {
    if (client) client.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}

module.exports = { main, clientOptions };

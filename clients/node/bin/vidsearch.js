#!/usr/bin/env node
'use strict';
/**
 * Command line for the Node.js client:
 *   vidsearch-node upload <file> [--video-id ID] [--title T] [--tag TAG]... [--wait]
 *   vidsearch-node job <job-id> [--wait]
 *   vidsearch-node search <text> [--top-k N] [--language ko]
 * Addresses: --gateway / --ingest or VIDSEARCH_GATEWAY / VIDSEARCH_INGEST. The API key comes from
 * VIDSEARCH_API_KEY or --api-key-file, never from an argument (which `ps` would show).
 */
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { VidsearchClient } = require('../src/client');

const USAGE = `usage: vidsearch-node [options] <upload FILE | job JOB_ID | search TEXT>
options:
  --gateway ADDR        gateway address (env VIDSEARCH_GATEWAY, default 127.0.0.1:50051)
  --ingest ADDR         ingest address (env VIDSEARCH_INGEST, default 127.0.0.1:50052)
  --api-key-file FILE   file holding the API key (or env VIDSEARCH_API_KEY)
  --tls-ca FILE         use TLS, trusting this CA (--tls-cert/--tls-key for mutual TLS)
  --tls-server-name N   name to verify the server certificate against
  --top-k N             search: number of hits (default 10)
  --language CODE       search: language hint, e.g. ko
  --video-id ID         upload: stable video id (default: derived from the content)
  --title T, --tag TAG  upload: metadata stored with every clip
  --wait                upload, job: wait until the job is final
  --timeout SECONDS     upload, job: how long --wait waits (default 600)
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
  'video-id': { type: 'string', default: '' },
  title: { type: 'string' },
  tag: { type: 'string', multiple: true, default: [] },
  wait: { type: 'boolean', default: false },
  timeout: { type: 'string', default: '600' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
};

function apiKey(values) {
  if (values['api-key-file']) return fs.readFileSync(values['api-key-file'], 'utf8').trim();
  return process.env.VIDSEARCH_API_KEY || undefined;
}

function formatHit(hit, rank) {
  const title = hit.metadata && hit.metadata.title ? `  ${hit.metadata.title}` : '';
  return `${String(rank + 1).padStart(3)}  ${hit.score.toFixed(4)}  ${hit.video_id} @ ${hit.start_timecode}  [${hit.shard}]${title}`;
}

function formatJob(job) {
  const error = job.error ? `  error: ${job.error}` : '';
  return `${job.job_id}  ${job.state}  ${job.stage}  clips ${job.clips_done}/${job.clips_total}${error}`;
}

async function main(argv) {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
  const [command, ...rest] = positionals;
  if (values.help || !command || rest.length === 0) {
    (values.help ? console.log : console.error)(USAGE);
    return values.help ? 0 : 2;
  }
  const tls = values['tls-ca'] ? {
    caFile: values['tls-ca'], certFile: values['tls-cert'], keyFile: values['tls-key'],
    serverName: values['tls-server-name'],
  } : undefined;
  const client = new VidsearchClient({
    gateway: values.gateway || process.env.VIDSEARCH_GATEWAY || '127.0.0.1:50051',
    ingest: values.ingest || process.env.VIDSEARCH_INGEST || '127.0.0.1:50052',
    apiKey: apiKey(values),
    tls,
  });
  const print = (reply, text) => console.log(values.json ? JSON.stringify(reply) : text);
  const timeoutMs = Number(values.timeout) * 1000;
  try {
    if (command === 'search') {
      const reply = await client.search(rest.join(' '), { topK: Number(values['top-k']), language: values.language });
      print(reply, reply.hits.map(formatHit).join('\n') + (reply.partial ? `\n(partial: ${reply.failed_shards})` : ''));
      return 0;
    }
    if (command === 'upload') {
      const metadata = { tags: values.tag };
      if (values.title) metadata.title = values.title;
      const reply = await client.uploadVideo(rest[0], { videoId: values['video-id'], metadata });
      if (!values.wait) {
        print(reply, `queued job ${reply.job_id} for video ${reply.video_id} (${reply.size_bytes} bytes)`);
        return 0;
      }
      const job = await client.waitForJob(reply.job_id, { timeoutMs });
      print(job, formatJob(job));
      return job.state === 'JOB_STATE_SUCCEEDED' ? 0 : 1;
    }
    if (command === 'job') {
      const job = values.wait ? await client.waitForJob(rest[0], { timeoutMs }) : await client.getJob(rest[0]);
      print(job, formatJob(job));
      return job.state === 'JOB_STATE_FAILED' ? 1 : 0;
    }
    console.error(`unknown command ${command}\n${USAGE}`);
    return 2;
  } catch (err) {
    console.error(`error: ${err.details || err.message}`);
    return 1;
  } finally {
    client.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}

module.exports = { main };

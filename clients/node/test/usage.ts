// Must type-check with `tsc --noEmit -p test` (npm test): the declarations a TypeScript user
// of the package gets, exercised the way such a user would write them. Never run.
import { readFileSync } from 'node:fs';
import { VidsearchClient, TlsSetupError, status, FINAL_STATES } from '..';
import type { Job, SearchHit, SearchResponse, ServiceError } from '..';

export async function example(): Promise<void> {
  const client = new VidsearchClient({
    gateway: 'search.example.com:443',
    ingest: 'ingest.example.com:443',
    apiKey: readFileSync('/run/secrets/vidsearch-key', 'utf8').trim(),
    tls: { caFile: 'ca.crt', certFile: 'client.crt', keyFile: 'client.key', serverName: 'search.example.com' },
    deadlineMs: 10_000,
  });
  const byText: SearchResponse = await client.search('스튜디오에서 전화를 받는 남자', {
    topK: 5, language: 'ko', filter: { tags: ['news'], min_start_seconds: 30 }, collapseByVideo: true,
  });
  const best: SearchHit | undefined = byText.hits[0];
  const title: string | undefined = best?.metadata['title'];
  const score: number = best ? best.score : 0;
  await client.searchByImage('frame.jpg', { topK: 3 });
  await client.searchByImage(Buffer.from([0xff, 0xd8]));
  await client.searchByVideo('query.mp4', { startSeconds: 2, endSeconds: 8, deadlineMs: 60_000 });
  const similar = await client.searchByClip('vid-1:000000000');
  const batch: SearchResponse[] = await client.batchSearch([
    { text: 'a rabbit', language: 'en', topK: 2 }, { clipId: similar.hits[0].clip_id }, { image: 'frame.jpg' },
  ]);
  const thumbnail: Buffer = (await client.getThumbnail(batch[0].hits[0].clip_id)).image;
  for await (const chunk of client.streamClip('vid-1:000000000')) {
    const bytes: Buffer = chunk.data;
    if (chunk.content_type) console.log(chunk.content_type, chunk.start_seconds, chunk.end_seconds, bytes.length);
  }
  const clip = await client.getClip('vid-1:000000000', { deadlineMs: 120_000 });
  const upload = await client.uploadVideo('movie.mp4', {
    videoId: 'movie', metadata: { title: 'Movie', tags: ['film'], extra: { source: 'archive' } },
    segment: { mode: 'SEGMENT_MODE_SHOTS', window_seconds: 10 },
  });
  const size: string = upload.size_bytes; // int64 arrives as a decimal string
  const submitted = await client.submitVideo('/media/archive/movie.mp4', { videoId: 'movie-2' });
  for await (const job of client.watchJob(upload.job_id)) {
    const progress: string = `${job.state} ${job.stage} ${job.clips_done}/${job.clips_total}`;
    console.log(progress);
  }
  const done: Job = await client.waitForJob(submitted.job_id, { timeoutMs: 60_000, onUpdate: (j) => console.log(j.state) });
  const final: boolean = FINAL_STATES.has(done.state);
  const cancelled: Job = await client.cancelJob(submitted.job_id);
  const deleted: number = (await client.deleteVideo('movie')).clips_deleted;
  try {
    await client.getJob('missing');
  } catch (err) {
    if ((err as ServiceError).code === status.NOT_FOUND) console.log('no such job');
  }
  console.log(title, score, thumbnail.length, clip.data.length, size, final, cancelled.state, deleted,
    new TlsSetupError('x') instanceof Error);
  client.close();
  new VidsearchClient({ gateway: 'search.example.com:443', tls: true }).close();
}

// @ts-expect-error a query has exactly one kind; a number is not a text
export const wrong: Parameters<VidsearchClient['batchSearch']>[0] = [{ text: 42 }];

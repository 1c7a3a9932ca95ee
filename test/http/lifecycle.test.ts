import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForGeneration } from '../helpers/generations.js';
import { httpModelEntry, LoopbackModelWorker, sendCallback, signCallback, writeModelsFile } from '../helpers/model-worker.js';
import { presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { parseExposition } from '../helpers/prometheus-text.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// Issue 15's acceptance walk-through over real HTTP: a server whose retention is two seconds and
// whose cleanup runs every second, on its own timer. An unused upload is removed from the store
// and answers `deleted`; a reference of a running generation survives every run while the
// generation runs (on a model worker the test holds), and goes once it has ended.

interface HeldJob {
  id: string;
  callbackUrl: string;
  callbackSecret: string;
}

/** A model worker that accepts every job (202) and settles it only when the test says. */
class HoldingWorker extends LoopbackModelWorker<HeldJob> {
  readonly jobs: HeldJob[] = [];

  protected onJob(job: HeldJob): void {
    this.jobs.push(job);
  }

  /** Ends the job: a signed `failed` callback, as a model worker sends one. */
  fail(job: HeldJob): Promise<number> {
    return sendCallback(job, signCallback(job, { status: 'failed', error: 'stopped by the test' }));
  }
}

const worker = new HoldingWorker();
let server: TestServer;
let apiKey: string;
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-lifecycle-'));
  const workerUrl = await worker.start();
  const file = await writeModelsFile(scratch, { held: httpModelEntry(`${workerUrl}/held`) });
  server = await startTestServer({
    KEYFRAME_MODELS_FILE: file,
    KEYFRAME_METRICS_TOKEN: METRICS_TOKEN,
    KEYFRAME_RETAIN_UNUSED: '2s',
    KEYFRAME_RETAIN_USED: '2s',
    KEYFRAME_CLEANUP_INTERVAL: '1s',
  });
  apiKey = (await server.createKey('erin')).key;
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await worker.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const METRICS_TOKEN = 'lifecycle-metrics-token';

/** The server's counters now (the metrics count deletions too). */
async function scrape() {
  const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  expect(res.status).toBe(200);
  return parseExposition(await res.text());
}

const statusOf = async (key: string) => (await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(key)}`, { key: apiKey })).body;

/**
 * Polls (every 200 ms, at most 20 s) until the cleanup finished deleting the upload: its record
 * finalised `deleted`. (From the mark on, the status already answers `deleted`, the object
 * perhaps still there for a moment.) Returns the status then.
 */
async function untilDeleted(key: string): Promise<any> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const { state } = await server.db.selectFrom('uploads').select('state').where('s3_key', '=', key).executeTakeFirstOrThrow();
    if (state === 'deleted') return statusOf(key);
    if (Date.now() > deadline) throw new Error(`${key} still ${state}, not deleted`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function verified(): Promise<{ key: string; deleteAfter: string }> {
  const { s3_key } = await presignAndPut(server, apiKey, 'image/png', readFixture('sample.png'));
  const body = await statusOf(s3_key);
  expect(body.state).toBe('verified');
  return { key: s3_key, deleteAfter: body.delete_after };
}

describe('the upload lifecycle over HTTP (2 s retention, a cleanup every second)', () => {
  it('removes an unused upload (status deleted); keeps a running generation’s reference until the generation ended', async () => {
    const used = await verified();
    const created = await server.api('POST', '/api/generations', { key: apiKey, body: { prompt: 'held', modelName: 'held', startFrameKey: used.key } });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const id = created.body.generations[0].generation_id as string;
    // Written with the generation: the reference, and the upload's last use.
    expect(await server.db.selectFrom('generation_references').selectAll().where('generation_id', '=', id).execute()).toEqual([{ generation_id: id, s3_key: used.key }]);
    expect((await server.db.selectFrom('uploads').select('last_used_at').where('s3_key', '=', used.key).executeTakeFirstOrThrow()).last_used_at).not.toBeNull();
    // In use by a queued or running generation: no retention applies.
    expect((await statusOf(used.key)).delete_after).toBeNull();

    // Arrived after the used one: once it is gone, a run past the used one's unused retention has been.
    const unused = await verified();
    expect(Date.parse(unused.deleteAfter) - Date.now()).toBeLessThanOrEqual(2000);
    const gone = await untilDeleted(unused.key);
    expect(gone).toMatchObject({ state: 'deleted', delete_after: null, expires_at: null, media: null });
    expect(await server.store.head(unused.key)).toBeNull();
    const row = await server.db.selectFrom('uploads').select(['deleted_reason', 'deleted_at']).where('s3_key', '=', unused.key).executeTakeFirstOrThrow();
    expect(row.deleted_reason).toBe('unused');

    // The running generation's reference survived that run and every one before it.
    const job = worker.jobs.find((j) => j.id === id);
    expect(job, 'the worker holds the job').toBeDefined();
    expect((await server.api('GET', `/api/generations/${id}`, { key: apiKey })).body.status).toBe('generating');
    expect((await statusOf(used.key)).state).toBe('verified');
    expect(await server.store.head(used.key)).not.toBeNull();

    // The generation ends; two seconds later the reference goes too.
    expect(await worker.fail(job!)).toBe(204);
    expect((await waitForGeneration(server.api, apiKey, id)).body.status).toBe('failed');
    expect((await untilDeleted(used.key)).state).toBe('deleted');
    expect(await server.store.head(used.key)).toBeNull();
    expect((await server.db.selectFrom('uploads').select('deleted_reason').where('s3_key', '=', used.key).executeTakeFirstOrThrow()).deleted_reason).toBe('used');

    // Both deletions are counted where the cleanup ran (this embedded server), each under its reason.
    const metrics = await scrape();
    expect(metrics.value('keyframe_retention_deletions_total', { what: 'unused_upload' })).toBe(1);
    expect(metrics.value('keyframe_retention_deletions_total', { what: 'used_reference' })).toBe(1);
  }, 60_000);
});

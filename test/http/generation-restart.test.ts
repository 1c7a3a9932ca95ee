import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Db } from '../../src/db/database.js';
import { freePort } from '../../src/free-port.js';
import { BIN, ensureBuilt, ROOT } from '../helpers/build.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';
const run = promisify(execFile);

let database: TestDatabase;
/** A connection of the test's own to the servers' database: it sees what they have committed. */
let reader: Db;
let port: number;
let env: NodeJS.ProcessEnv;
const children = new Set<ChildProcess>();


/** `keyframe serve` as a child process; resolves once /healthz answers (checked every 100 ms, 30 s at most). */
async function serve(): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`keyframe serve exited: ${stderr}`);
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
    if (ok) return child;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`keyframe serve did not answer: ${stderr}`);
}

function killHard(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

async function api(method: string, pathname: string, key: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${port}${pathname}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** The job's row, read from the servers' database through the test's own connection. */
async function jobRow(id: string): Promise<{ status: string; started_at: string | null; attempts: number; error: string | null }> {
  return reader.selectFrom('generations').select(['status', 'started_at', 'attempts', 'error']).where('id', '=', id).executeTakeFirstOrThrow();
}

beforeAll(async () => {
  // The child runs the compiled code: compile the current sources first.
  ensureBuilt();
  // The servers' database, of the project's dialect; migrated first, since the CLI runs before any server.
  database = await testDatabase('restart');
  await database.migrate();
  reader = await database.secondConnection();
  port = await freePort();
  // A short lease: the restarted server takes up the killed one's job once its lease lapsed (about 4 s).
  env = { ...process.env, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', KEYFRAME_GENERATION_LEASE_SECONDS: '3', ...database.env };
});

afterAll(async () => {
  await Promise.all([...children].map(killHard));
  await database?.dispose();
});

describe('a server killed while a job runs', () => {
  it('finishes the job after it starts again: completed, or failed with a reason', async () => {
    const { stdout } = await run(process.execPath, [BIN, 'keys', 'create', '--user', 'frank'], { env });
    const key = stdout.trim();

    let server = await serve();
    const presigned = await api('POST', '/api/s3/presign-upload', key, { kind: 'upload', contentType: 'image/png' });
    const png = await readFile(path.join(ROOT, 'test', 'fixtures', 'media', 'sample.png'));
    const put = await fetch(presigned.body.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) });
    expect(put.status).toBe(200);

    // A long render, so that the kill lands while it runs.
    const created = await api('POST', '/api/generations', key, {
      prompt: 'long enough to be interrupted',
      modelName: 'keyframe-local',
      duration: '20s',
      resolution: '1080p',
      startFrameKey: presigned.body.s3_key,
    });
    expect(created.status).toBe(200);
    const id = created.body.generations[0].generation_id as string;
    for (let i = 0; i < 200 && (await jobRow(id)).started_at === null; i++) await new Promise((r) => setTimeout(r, 50));

    await killHard(server);
    // The kill interrupted the job: the database still says it is running.
    expect(await jobRow(id)).toMatchObject({ status: 'generating', started_at: expect.any(String), attempts: 1 });

    server = await serve();
    let final: any;
    for (let i = 0; i < 240; i++) {
      final = (await api('GET', `/api/generations/${id}`, key)).body;
      if (final.status !== 'generating') break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(['completed', 'failed']).toContain(final.status);
    if (final.status === 'completed') {
      expect(final.video_url).toEqual(expect.any(String));
      expect((await jobRow(id)).attempts).toBe(2);
    } else {
      expect(final.error).toEqual(expect.stringMatching(/\S/));
    }
  });
});

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../bench/lib/processes.js';
import { ApiError } from '../../src/domain/errors.js';
import { TEST_DIALECT } from '../helpers/database.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { expectEnvelope4xx } from './support/checks.js';

/**
 * Auth under attack: random well-formed keys never authenticate (in-process for
 * volume, over HTTP for a sample), a revoked key fails on the very next request,
 * also when revoked by the CLI from another process. Timing is measured in
 * bench/auth-timing.ts, not here.
 */
const run = promisify(execFile);
let server: TestServer;
let key: string;

beforeAll(async () => {
  server = await startTestServer();
  key = (await server.createKey('alice')).key;
  // Other live keys, so that a random key has something to collide with.
  for (let i = 0; i < 200; i++) await server.createKey(`user-${i % 20}`);
});

afterAll(async () => {
  await server?.stop();
});

const randomKey = () => `prism_sk_${randomBytes(32).toString('base64url')}`;

async function presign(k: string) {
  return server.api('POST', '/api/s3/presign-upload', { key: k, body: { kind: 'upload', contentType: 'image/png' } });
}

describe('auth', () => {
  it('10 000 random well-formed keys never authenticate', async () => {
    let refused = 0;
    for (let i = 0; i < 10_000; i++) {
      const candidate = randomKey();
      await expect(server.apiKeys.authenticate(`Bearer ${candidate}`)).rejects.toSatisfy(
        (err: unknown) => err instanceof ApiError && err.code === 'unauthorized',
      );
      refused++;
    }
    expect(refused).toBe(10_000);
    // And the real key still works, so the refusals were not a broken lookup.
    await expect(server.apiKeys.authenticate(`Bearer ${key}`)).resolves.toMatchObject({ userId: 'alice' });
  });

  it('random keys over HTTP get the one 401, whatever their shape', async () => {
    const shapes = fc.oneof(
      fc.constant(null).map(() => randomKey()),
      fc.constant(null).map(() => key.slice(0, -2) + randomBytes(2).toString('base64url').slice(0, 2)),
      fc.string({ minLength: 0, maxLength: 80 }).filter((s) => !/[\r\n\0]/.test(s) && /^[\x20-\x7e]*$/.test(s)),
      fc.constant(null).map(() => `prism_sk_${randomBytes(64).toString('base64url')}`),
    );
    await fc.assert(
      fc.asyncProperty(shapes, async (candidate) => {
        fc.pre(candidate !== key);
        const res = await fetch(`${server.url}/api/s3/presign-upload`, {
          method: 'POST',
          headers: { authorization: `Bearer ${candidate}`, 'content-type': 'application/json' },
          body: '{"kind":"upload","contentType":"image/png"}',
        });
        const text = await res.text();
        const err = expectEnvelope4xx(res.status, text, `key ${candidate}`, [key]);
        expect(err).toEqual({ error: 'unauthorized', message: 'Invalid or missing API key' });
      }),
      { numRuns: 500 },
    );
  });

  it('a key revoked in-process fails on the very next request', async () => {
    const created = await server.createKey('dave');
    expect((await presign(created.key)).status).toBe(200);
    expect(await server.apiKeys.revokeKey(created.id)).toBe(true);
    const after = await presign(created.key);
    expect(after.status).toBe(401);
    expect(after.body).toEqual({ error: 'unauthorized', message: 'Invalid or missing API key' });
  });

  it('a key revoked by the CLI (another process, same database) fails on the very next request (SQLite), within 1 s (PostgreSQL)', async () => {
    const created = await server.createKey('erin');
    expect((await presign(created.key)).status).toBe(200);
    await run(process.execPath, [path.join(ROOT, 'bin/keyframe.js'), 'keys', 'revoke', created.id], {
      env: { ...process.env, ...server.database.env },
    });
    // SQLite's data_version is read at the next request; PostgreSQL's NOTIFY arrives on its own connection.
    const deadline = Date.now() + (TEST_DIALECT === 'postgres' ? 1000 : 0);
    let after = await presign(created.key);
    while (after.status === 200 && Date.now() < deadline) after = await presign(created.key);
    expect(after.status).toBe(401);
    expect(after.body).toEqual({ error: 'unauthorized', message: 'Invalid or missing API key' });
    // Other keys are untouched.
    expect((await presign(key)).status).toBe(200);
  });
});

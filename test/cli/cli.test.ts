import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { BIN, ensureBuilt, ROOT, runKeyframe, type KeyframeRun } from '../helpers/build.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';

/** The database every command and server here shares: a data dir, and on postgres a database of its own. */
let database: TestDatabase;


/** Runs the real `keyframe` command against the test database (KEYFRAME_DATA_DIR, and KEYFRAME_DATABASE_URL on postgres). */
const keyframe = (args: string[], env: Record<string, string> = {}): Promise<KeyframeRun> => runKeyframe(args, { ...database.env, ...env });

/** Runs a command that must succeed and print JSON; its output. */
async function keyframeJson(args: string[]): Promise<any> {
  const res = await keyframe(args);
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout);
}

/** Exactly one non-empty line. */
const oneLine = (text: string) => {
  expect(text.endsWith('\n')).toBe(true);
  expect(text.trimEnd().split('\n')).toHaveLength(1);
  expect(text.trim().length).toBeGreaterThan(0);
};

beforeAll(async () => {
  ensureBuilt();
  database = await testDatabase('cli');
  // Migrated as an install is (by `serve` or a migration step): the CLI's commands work on a current schema.
  await database.migrate();
});
afterAll(async () => database?.dispose());

describe('keyframe users', () => {
  it('creates and lists users', async () => {
    const created = await keyframe(['users', 'create', 'ursula']);
    expect(created.code).toBe(0);
    expect(created.stdout).toContain('ursula');
    const again = await keyframe(['users', 'create', 'ursula']);
    expect(again.code).toBe(0);

    const list = await keyframe(['users', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n').filter((l) => l.startsWith('ursula\t'))).toHaveLength(1);

    const json = await keyframe(['users', 'list', '--json']);
    expect(json.code).toBe(0);
    const users = JSON.parse(json.stdout) as { id: string }[];
    expect(users.filter((u) => u.id === 'ursula')).toHaveLength(1);
  });

  it('refuses an invalid user id with exit 1 and one line', async () => {
    const res = await keyframe(['users', 'create', '../etc']);
    expect(res.code).toBe(1);
    oneLine(res.stderr);
    expect(res.stderr).toMatch(/user id/);
  });
});

describe('keyframe keys', () => {
  it('create --json prints exactly the documented fields and nothing else', async () => {
    const res = await keyframe(['keys', 'create', '--user', 'kim', '--json']);
    expect(res.code).toBe(0);
    oneLine(res.stdout);
    const created = JSON.parse(res.stdout);
    expect(Object.keys(created)).toEqual(['id', 'key', 'user_id', 'scopes', 'name', 'created_at']);
    expect(created.key).toMatch(/^prism_sk_[A-Za-z0-9_-]{43,}$/);
    expect(created.user_id).toBe('kim');
    expect(created.scopes).toEqual(['templates:read']);
    expect(created.name).toBeNull();
    expect(Number.isNaN(Date.parse(created.created_at))).toBe(false);
  });

  it('create without --json prints the key alone on stdout', async () => {
    const res = await keyframe(['keys', 'create', '--user', 'kim']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^prism_sk_[A-Za-z0-9_-]{43,}\n$/);
  });

  it('--scope is repeatable and sets the scopes; --name sets the label', async () => {
    const res = await keyframe(['keys', 'create', '--user', 'kim', '--scope', 'templates:read', '--scope', 'generations:write', '--name', 'ci bot', '--json']);
    expect(res.code).toBe(0);
    const created = JSON.parse(res.stdout);
    expect(created.scopes).toEqual(['templates:read', 'generations:write']);
    expect(created.name).toBe('ci bot');

    const only = await keyframeJson(['keys', 'create', '--user', 'kim', '--scope', 'generations:write', '--json']);
    expect(only.scopes).toEqual(['generations:write']);
  });

  it('creates a missing user', async () => {
    expect((await keyframe(['users', 'list', '--json'])).stdout).not.toContain('"newcomer"');
    const res = await keyframe(['keys', 'create', '--user', 'newcomer', '--json']);
    expect(res.code).toBe(0);
    const users = await keyframeJson(['users', 'list', '--json']) as { id: string }[];
    expect(users.map((u) => u.id)).toContain('newcomer');
  });

  it('list never prints a key, in text or JSON, and revoke marks it', async () => {
    const a = await keyframeJson(['keys', 'create', '--user', 'lee', '--name', 'first', '--json']);
    const b = await keyframeJson(['keys', 'create', '--user', 'lee', '--json']);
    const secrets = [a.key, b.key].map((k: string) => k.slice('prism_sk_'.length));

    for (const args of [['keys', 'list'], ['keys', 'list', '--json'], ['keys', 'list', '--user', 'lee'], ['keys', 'list', '--user', 'lee', '--json']]) {
      const res = await keyframe(args);
      expect(res.code).toBe(0);
      for (const secret of secrets) {
        expect(res.stdout).not.toContain(secret.slice(0, 12));
        expect(res.stdout).not.toContain(secret.slice(-12));
      }
      expect(res.stdout).toContain(a.id);
      expect(res.stdout).toContain(b.id);
    }

    const listed = await keyframeJson(['keys', 'list', '--user', 'lee', '--json']) as Record<string, unknown>[];
    expect(listed.map((k) => k.id)).toEqual([a.id, b.id]);
    expect(listed[0]).not.toHaveProperty('key');
    expect(listed[0]).not.toHaveProperty('key_hash');
    expect(listed[0]).toMatchObject({ user_id: 'lee', name: 'first', revoked_at: null });

    const revoked = await keyframe(['keys', 'revoke', a.id]);
    expect(revoked.code).toBe(0);
    const after = await keyframeJson(['keys', 'list', '--user', 'lee', '--json']) as Record<string, unknown>[];
    expect(after.find((k) => k.id === a.id)?.revoked_at).toEqual(expect.any(String));
    expect(after.find((k) => k.id === b.id)?.revoked_at).toBeNull();
    expect((await keyframe(['keys', 'list', '--user', 'lee'])).stdout).toMatch(new RegExp(`${a.id}\\t.*revoked`));
  });
});

describe('exit codes', () => {
  it.each([
    [[], 'no command'],
    [['frobnicate'], 'unknown command'],
    [['keys'], 'incomplete command'],
    [['keys', 'create'], 'missing --user'],
    [['keys', 'create', '--user'], '--user without a value'],
    [['keys', 'create', '--user', 'kim', '--bogus'], 'unknown option'],
    [['keys', 'revoke'], 'missing key id'],
    [['keys', 'revoke', 'a', 'b'], 'extra argument'],
    [['users', 'create'], 'missing user id'],
    [['users', 'show'], 'users show without a user id'],
    [['users', 'show', 'a', 'b'], 'users show with an extra argument'],
  ])('%j (%s) is a usage error: exit 2, one line on stderr, nothing on stdout', async (args) => {
    const res = await keyframe(args as string[]);
    expect(res.code).toBe(2);
    oneLine(res.stderr);
    expect(res.stdout).toBe('');
  });

  it('revoking an unknown key fails: exit 1, one line', async () => {
    const res = await keyframe(['keys', 'revoke', 'key_doesnotexist']);
    expect(res.code).toBe(1);
    oneLine(res.stderr);
    expect(res.stderr).toContain('key_doesnotexist');
  });

  it('a bad configuration fails: exit 1, one line naming the variable', async () => {
    const res = await keyframe(['keys', 'list'], { PORT: 'eighty' });
    expect(res.code).toBe(1);
    oneLine(res.stderr);
    expect(res.stderr).toMatch(/PORT/);
  });

  it('an invalid scope fails: exit 1, one line', async () => {
    const res = await keyframe(['keys', 'create', '--user', 'kim', '--scope', 'ALL THE THINGS']);
    expect(res.code).toBe(1);
    oneLine(res.stderr);
    expect(res.stdout).toBe('');
  });

  it('--help succeeds', async () => {
    const res = await keyframe(['--help']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/keys create --user/);
  });
});

describe('the CLI and a running server share the data dir', () => {
  let server: ChildProcess;
  let baseUrl: string;

  const freePort = () =>
    new Promise<number>((resolve, reject) => {
      const probe = net.createServer().once('error', reject);
      probe.listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });

  beforeAll(async () => {
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    server = spawn(process.execPath, [BIN, 'serve'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', PORT: String(port), LOG_LEVEL: 'silent', ...database.env },
      stdio: 'ignore',
    });
    for (let i = 0; i < 100; i++) {
      const up = await fetch(`${baseUrl}/healthz`).then((r) => r.ok, () => false);
      if (up) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('keyframe serve did not start within 10 s');
  });
  afterAll(() => {
    server?.kill('SIGTERM');
  });

  const presign = (key: string) =>
    fetch(`${baseUrl}/api/s3/presign-upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'upload', contentType: 'image/png' }),
    });

  it('a key created by the CLI works at once; its revocation takes effect on the next request', async () => {
    const created = await keyframeJson(['keys', 'create', '--user', 'mallory', '--json']);
    const ok = await presign(created.key);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { s3_key: string }).s3_key.startsWith('users/mallory/')).toBe(true);

    expect((await keyframe(['keys', 'revoke', created.id])).code).toBe(0);
    const refused = await presign(created.key);
    expect(refused.status).toBe(401);
    expect(await refused.json()).toEqual({ error: 'unauthorized', message: 'Invalid or missing API key' });
  });

  it('users show prints usage against limits, in text and --json; an unknown user fails with exit 1', async () => {
    const created = await keyframeJson(['keys', 'create', '--user', 'quinn', '--json']);
    for (let i = 0; i < 2; i++) expect((await presign(created.key)).status).toBe(200);

    const usage = await keyframeJson(['users', 'show', 'quinn', '--json']);
    expect(usage).toEqual({
      user_id: 'quinn',
      pending_uploads: { used: 2, limit: 100 },
      stored_bytes: { stored: 0, reserved: 2 * 20 * 1024 * 1024, used: 2 * 20 * 1024 * 1024, limit: 10 * 2 ** 30 },
      active_generations: { used: 0, limit: 20 },
      generations_last_hour: { used: 0, limit: 200 },
      presigns_per_minute: { limit: 600 },
    });

    const text = await keyframe(['users', 'show', 'quinn']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('pending uploads\t2 / 100');
    expect(text.stdout).toContain(`stored bytes\t${2 * 20 * 1024 * 1024} / ${10 * 2 ** 30}`);
    expect(text.stdout).toContain('active generations\t0 / 20');
    expect(text.stdout).toContain('generations, last hour\t0 / 200');
    expect(text.stdout).toContain('presigns per minute\tlimit 600');

    // The limits shown are the configured ones.
    const smaller = await keyframe(['users', 'show', 'quinn', '--json'], { KEYFRAME_MAX_PENDING_UPLOADS: '7' });
    expect(JSON.parse(smaller.stdout).pending_uploads).toEqual({ used: 2, limit: 7 });

    const unknown = await keyframe(['users', 'show', 'nobody-here']);
    expect(unknown.code).toBe(1);
    oneLine(unknown.stderr);
    expect(unknown.stderr).toContain('nobody-here');
    expect(unknown.stdout).toBe('');
  });

  it('a second serve on the same port fails with exit 1 and one line', async () => {
    const res = await keyframe(['serve'], { PORT: new URL(baseUrl).port });
    expect(res.code).toBe(1);
    oneLine(res.stderr);
    expect(res.stderr).toMatch(/EADDRINUSE|in use/);
  });
});

describe('keyframe serve --role and keyframe worker', () => {
  it('refuse a bad role or extra arguments with exit 2 and one line', async () => {
    const bad = await keyframe(['serve', '--role', 'scheduler']);
    expect(bad.code).toBe(2);
    oneLine(bad.stderr);
    expect(bad.stderr).toContain('--role must be one of all, api, worker');

    const extra = await keyframe(['worker', 'now']);
    expect(extra.code).toBe(2);
    oneLine(extra.stderr);

    const contradiction = await keyframe(['worker'], { KEYFRAME_ROLE: 'api' });
    expect(contradiction.code).toBe(2);
    expect(contradiction.stderr).toContain('keyframe worker contradicts KEYFRAME_ROLE=api');
  });

  it('refuse a split role on the disk store at config load, with exit 1 and one line naming it', async () => {
    for (const [args, env] of [
      [['worker'], {}],
      [['serve', '--role', 'api'], {}],
      [['serve'], { KEYFRAME_ROLE: 'worker' }],
    ] as const) {
      const res = await keyframe([...args], env);
      expect(res.code, res.stderr).toBe(1);
      oneLine(res.stderr);
      expect(res.stderr).toContain('needs KEYFRAME_STORAGE=s3');
      expect(res.stderr).toContain('single-node');
    }
  });
});

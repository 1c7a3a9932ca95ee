import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storedBytes } from '../helpers/database.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const PRESIGN = '/api/s3/presign-upload';

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => server?.stop());

const presign = (key: string, body: Record<string, unknown> = { kind: 'upload', contentType: 'image/png' }) =>
  server.api('POST', PRESIGN, { key, body });

async function put(url: string, bytes: Buffer, contentType = 'image/png') {
  const res = await fetch(url, { method: 'PUT', headers: { 'content-type': contentType }, body: new Uint8Array(bytes) });
  return { status: res.status, text: await res.text(), etag: res.headers.get('etag') };
}

/** Every file under the data dir's objects for `userId`, relative to it. */
function objectsOf(userId: string): string[] {
  const dir = path.join(server.dataDir, 'objects', 'users', userId);
  return existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String) : [];
}

describe('two users, two keys', () => {
  let alice: string;
  let bob: string;

  beforeAll(async () => {
    alice = (await server.createKey('alice')).key;
    bob = (await server.createKey('bob')).key;
  });

  it('each key only ever gets keys under its own user prefix, whatever the body says', async () => {
    const steering = [
      {},
      { fileName: '../bob/x.png' },
      { fileName: 'users/bob/user-uploads/b/f.png' },
      { userId: 'bob', user_id: 'bob', s3_key: 'users/bob/user-uploads/b/f.png', prefix: 'users/bob/' },
    ];
    for (const extra of steering) {
      const a = await presign(alice, { kind: 'upload', contentType: 'image/png', ...extra });
      const b = await presign(bob, { kind: 'upload', contentType: 'image/png', ...extra });
      expect(a.status).toBe(200);
      expect(b.status).toBe(200);
      expect(a.body.s3_key.startsWith('users/alice/user-uploads/')).toBe(true);
      expect(b.body.s3_key.startsWith('users/bob/user-uploads/')).toBe(true);
      expect(new URL(a.body.upload_url).pathname.startsWith('/keyframe/users/alice/')).toBe(true);
      expect(new URL(b.body.upload_url).pathname.startsWith('/keyframe/users/bob/')).toBe(true);
    }
  });

  it("an upload URL of A altered to point into B's prefix is refused, and nothing lands there", async () => {
    const a = (await presign(alice)).body;
    const b = (await presign(bob)).body;
    const aUrl = new URL(a.upload_url);
    const bPath = new URL(b.upload_url).pathname;

    const altered = [
      // A's signature on B's own pending key: the one that would overwrite B's upload.
      `${aUrl.origin}${bPath}${aUrl.search}`,
      // A's batch and file under B's prefix.
      a.upload_url.replace('/users/alice/', '/users/bob/'),
      // Percent-encoded variants of the same path.
      a.upload_url.replace('/users/alice/', '/users/%62ob/'),
      a.upload_url.replace('/users/alice/', '/users/alice/..%2F..%2Fusers/bob/'),
    ];
    for (const url of altered) {
      const res = await put(url, Buffer.from('not yours'));
      expect(res.status, url).toBe(403);
      expect(res.text).toMatch(/^<\?xml[^>]*>\s*<Error><Code>(SignatureDoesNotMatch|AccessDenied)<\/Code>/);
    }
    expect(objectsOf('bob')).toEqual([]);
    const bRow = await server.db.selectFrom('uploads').select(['state', 'user_id']).where('s3_key', '=', b.s3_key).executeTakeFirstOrThrow();
    expect(bRow).toEqual({ state: 'pending', user_id: 'bob' });

    // The unaltered URL works, so the refusals above are about the alteration alone.
    expect((await put(a.upload_url, Buffer.from('mine'))).status).toBe(200);
    expect(objectsOf('alice').some((p) => p.endsWith(path.basename(a.s3_key)))).toBe(true);
  });

  it("A's upload URL cannot be used to read anything, its own object or B's", async () => {
    const a = (await presign(alice)).body;
    const b = (await presign(bob)).body;
    await put(b.upload_url, Buffer.from('bob secret bytes'));
    await put(a.upload_url, Buffer.from('alice bytes'));
    for (const url of [a.upload_url, a.upload_url.replace(a.s3_key, b.s3_key)]) {
      const res = await fetch(url);
      const text = await res.text();
      expect(res.status).toBe(403);
      expect(text).not.toContain('bob secret bytes');
      expect(text).not.toContain('alice bytes');
    }
  });

  it("B's upload record is not changed by anything A does", async () => {
    const b = (await presign(bob)).body;
    for (let i = 0; i < 3; i++) await presign(alice, { kind: 'upload', contentType: 'image/png', s3_key: b.s3_key });
    const row = await server.db.selectFrom('uploads').selectAll().where('s3_key', '=', b.s3_key).executeTakeFirstOrThrow();
    expect(row.user_id).toBe('bob');
    expect(row.state).toBe('pending');
  });
});

describe('revocation', () => {
  it('a revoked key is refused on the very next request, other keys of the user keep working', async () => {
    const doomed = await server.createKey('erin');
    const sibling = await server.createKey('erin');
    expect((await presign(doomed.key)).status).toBe(200);
    expect(await server.apiKeys.revokeKey(doomed.id)).toBe(true);
    const next = await presign(doomed.key);
    expect(next.status).toBe(401);
    expect(next.body).toEqual({ error: 'unauthorized', message: 'Invalid or missing API key' });
    expect((await presign(sibling.key)).status).toBe(200);
  });

  it('revoking twice keeps the key revoked; an unknown id is reported', async () => {
    const k = await server.createKey('erin');
    expect(await server.apiKeys.revokeKey(k.id)).toBe(true);
    expect(await server.apiKeys.revokeKey(k.id)).toBe(true);
    expect((await presign(k.key)).status).toBe(401);
    expect(await server.apiKeys.revokeKey('key_doesnotexist')).toBe(false);
  });
});

describe('key storage and scopes', () => {
  it('has the prism_sk_ format with at least 32 random bytes', async () => {
    const { key } = await server.createKey('frank');
    expect(key).toMatch(/^prism_sk_[A-Za-z0-9_-]{43,}$/);
    const other = await server.createKey('frank');
    expect(other.key).not.toBe(key);
  });

  it('stores only a SHA-256 hash and a short display prefix, never the key', async () => {
    const created = await server.createKey('grace');
    const secret = created.key.slice('prism_sk_'.length);
    // Read back through another connection: what is committed, as stored.
    const db = await server.database.secondConnection();
    try {
      const row = (await db.selectFrom('api_keys').selectAll().where('id', '=', created.id).executeTakeFirstOrThrow()) as Record<string, unknown>;
      expect(row.key_hash).toBe(createHash('sha256').update(created.key).digest('hex'));
      expect(created.key.startsWith(String(row.display_prefix))).toBe(true);
      expect(String(row.display_prefix).length).toBeLessThanOrEqual('prism_sk_'.length + 8);
      for (const [column, value] of Object.entries(row)) {
        expect(String(value), column).not.toContain(secret.slice(0, 16));
        expect(String(value), column).not.toContain(secret.slice(-16));
      }
    } finally {
      await db.destroy();
    }
    // Nor anywhere else in the database: SQLite's main file and write-ahead log, or a dump of all of PostgreSQL's rows.
    const stored = await storedBytes(server.database);
    expect(stored.length).toBeGreaterThan(0);
    for (const { name, bytes } of stored) {
      expect(bytes.includes(secret.slice(0, 16)), name).toBe(false);
      expect(bytes.includes(secret.slice(-16)), name).toBe(false);
    }
  });

  it('has templates:read by default', async () => {
    const created = await server.createKey('heidi');
    expect(created.scopes).toEqual(['templates:read']);
    expect((await presign(created.key)).status).toBe(200);
  });

  it('explicit scopes replace the default', async () => {
    const only = await server.createKey('heidi', ['generations:write']);
    expect(only.scopes).toEqual(['generations:write']);
    const res = await presign(only.key);
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('forbidden');
    const both = await server.createKey('heidi', ['templates:read', 'generations:write']);
    expect(both.scopes).toEqual(['templates:read', 'generations:write']);
    expect((await presign(both.key)).status).toBe(200);
  });

  it('refuses a malformed scope', async () => {
    await expect(server.createKey('heidi', ['Templates Read'])).rejects.toThrow(/invalid scope/);
  });
});

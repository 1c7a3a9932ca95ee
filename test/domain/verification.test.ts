import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BYTES } from '../../src/domain/media-types.js';
import { SNIFF_BYTES, Verifier } from '../../src/domain/verification.js';
import { CountingStore } from '../helpers/counting-store.js';
import { GENUINE, presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * The Verifier on a real server's disk store and database: uploads go through
 * presigned URLs over real HTTP, and the Verifier reads the same store through
 * a counting delegate, so the store calls it makes can be seen.
 */
let server: TestServer;
let alice: string;

beforeAll(async () => {
  server = await startTestServer();
  alice = (await server.createKey('alice')).key;
  await server.createKey('bob');
});

afterAll(async () => {
  await server?.stop();
});

function verifier(): { verifier: Verifier; store: CountingStore } {
  const store = new CountingStore(server.store);
  return { verifier: new Verifier(server.db, store), store };
}

const record = (key: string) => server.db.selectFrom('uploads').selectAll().where('s3_key', '=', key).executeTakeFirstOrThrow();

async function expectRejected(key: string, reason: RegExp) {
  const { verifier: v } = verifier();
  const status = await v.status('alice', key);
  expect(status?.state).toBe('rejected');
  expect(status?.reason).toMatch(reason);
  expect(await server.store.head(key)).toBeNull();
  expect((await record(key)).state).toBe('rejected');
  return status!;
}

describe('Verifier', () => {
  it('verifies a PNG declared as PNG, recording size, sniffed type and checksum', async () => {
    const bytes = readFixture('sample.png');
    const { s3_key } = await presignAndPut(server, alice, 'image/png', bytes);
    const { verifier: v, store } = verifier();
    const status = await v.status('alice', s3_key);
    expect(status).toMatchObject({ s3_key, state: 'verified', content_type: 'image/png', family: 'image', size: bytes.length, max_bytes: MAX_BYTES.image, sniffed_type: 'image/png' });
    expect(status?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(status).not.toHaveProperty('reason');
    expect(store.calls.map((c) => c.method)).toEqual(['head', 'getRange']);
    expect(await record(s3_key)).toMatchObject({ state: 'verified', size: bytes.length, sniffed_type: 'image/png', sha256: status?.sha256 });
  });

  it.each(GENUINE)('verifies the genuine $file declared as $contentType', async ({ file, contentType, sniffedAs }) => {
    const { s3_key } = await presignAndPut(server, alice, contentType, readFixture(file));
    const status = await verifier().verifier.status('alice', s3_key);
    expect(status).toMatchObject({ state: 'verified', content_type: contentType, sniffed_type: sniffedAs });
  });

  it('answers a verified upload from the database alone the second time', async () => {
    const { s3_key } = await presignAndPut(server, alice, 'video/mp4', readFixture('sample.mp4'));
    const { verifier: v, store } = verifier();
    const first = await v.status('alice', s3_key);
    expect(store.count()).toBe(2);
    const second = await v.status('alice', s3_key);
    expect(store.count()).toBe(2);
    expect(second).toEqual(first);
    expect(second?.state).toBe('verified');
  });

  it('answers a rejected upload from the database alone the second time', async () => {
    const { s3_key } = await presignAndPut(server, alice, 'image/png', readFixture('page.html'));
    const { verifier: v, store } = verifier();
    const first = await v.status('alice', s3_key);
    const calls = store.count();
    expect(first?.state).toBe('rejected');
    expect(await v.status('alice', s3_key)).toEqual(first);
    expect(store.count()).toBe(calls);
  });

  it('reads only the first bytes of a large object', async () => {
    // A genuine PNG followed by padding: 256 KiB in all, four times what the check reads.
    const bytes = Buffer.concat([readFixture('sample.png'), Buffer.alloc(256 * 1024)]);
    const { s3_key } = await presignAndPut(server, alice, 'image/png', bytes);
    const { verifier: v, store } = verifier();
    expect((await v.status('alice', s3_key))?.state).toBe('verified');
    expect(store.calls.filter((c) => c.method === 'getRange').map((c) => c.args)).toEqual([[s3_key, 0, SNIFF_BYTES - 1]]);
  });

  describe('rejects and deletes', () => {
    it('HTML declared as PNG', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'image/png', readFixture('page.html'));
      await expectRejected(s3_key, /not a recognised image format/);
    });

    it('SVG declared as PNG', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'image/png', readFixture('image.svg'));
      await expectRejected(s3_key, /application\/xml, not the declared image\/png/);
    });

    it('an HTML/PNG polyglot (HTML first, PNG later) declared as PNG', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'image/png', readFixture('polyglot-html-png.html'));
      await expectRejected(s3_key, /not a recognised image format/);
    });

    it('a JPEG declared as PNG', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'image/png', readFixture('sample.jpg'));
      const status = await expectRejected(s3_key, /image\/jpeg, not the declared image\/png/);
      expect(status.sniffed_type).toBe('image/jpeg');
    });

    it('an MP3 declared as MP4', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'video/mp4', readFixture('sample.mp3'));
      await expectRejected(s3_key, /audio\/mpeg, not the declared video\/mp4/);
    });

    it('random bytes', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'video/webm', readFixture('random.bin'));
      await expectRejected(s3_key, /not a recognised video format/);
    });

    it('an empty object', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'audio/mpeg', readFixture('empty.bin'));
      await expectRejected(s3_key, /empty/);
    });

    it('a PNG cut short', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'image/png', readFixture('truncated.png'));
      await expectRejected(s3_key, /incomplete.*truncated: a PNG chunk ends at byte/);
    });

    it('an MP4 cut short', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'video/mp4', readFixture('truncated.mp4'));
      await expectRejected(s3_key, /incomplete.*truncated: the \w+ box ends at byte/);
    });

    it('an object over max_bytes (placed in the store directly: the disk store refuses it at upload)', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'image/png', null);
      const bytes = Buffer.concat([readFixture('sample.png'), Buffer.alloc(MAX_BYTES.image + 1 - readFixture('sample.png').length)]);
      await server.store.put(s3_key, Readable.from([bytes]), 'image/png');
      await expectRejected(s3_key, new RegExp(`${MAX_BYTES.image + 1} bytes, over the ${MAX_BYTES.image}-byte limit`));
    });

    it('an object stored with another Content-Type than the declared one', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'image/png', null);
      await server.store.put(s3_key, Readable.from([readFixture('sample.png')]), 'text/html');
      await expectRejected(s3_key, /stored as text\/html, not the declared image\/png/);
    });
  });

  it('passes a GIF/JS polyglot declared as GIF: its bytes are a genuine GIF (see test/fixtures/media/README.md)', async () => {
    const { s3_key } = await presignAndPut(server, alice, 'image/gif', readFixture('polyglot-gif-js.gif'));
    expect(await verifier().verifier.status('alice', s3_key)).toMatchObject({ state: 'verified', sniffed_type: 'image/gif' });
  });

  it('moves pending → uploaded → verified', async () => {
    const { s3_key, upload_url } = await presignAndPut(server, alice, 'audio/flac', null);
    const { verifier: v } = verifier();
    expect(await v.status('alice', s3_key)).toMatchObject({ state: 'pending', size: null });
    expect((await record(s3_key)).state).toBe('pending');

    const bytes = readFixture('sample.flac');
    const res = await fetch(upload_url, { method: 'PUT', headers: { 'content-type': 'audio/flac' }, body: new Uint8Array(bytes) });
    expect(res.status).toBe(200);
    expect(await record(s3_key)).toMatchObject({ state: 'uploaded', size: bytes.length });

    expect(await v.status('alice', s3_key)).toMatchObject({ state: 'verified', size: bytes.length, sniffed_type: 'audio/flac' });
  });

  it('says expired for a pending upload whose URL has expired, without storing it', async () => {
    const { s3_key } = await presignAndPut(server, alice, 'image/png', null);
    await server.db.updateTable('uploads').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('s3_key', '=', s3_key).execute();
    expect(await verifier().verifier.status('alice', s3_key)).toMatchObject({ state: 'expired', size: null });
    expect((await record(s3_key)).state).toBe('pending');
  });

  it('still verifies an object that arrived although the URL has expired since (an S3 PUT may finish after expiry)', async () => {
    const { s3_key } = await presignAndPut(server, alice, 'image/png', readFixture('sample.png'));
    await server.db.updateTable('uploads').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('s3_key', '=', s3_key).execute();
    expect((await verifier().verifier.status('alice', s3_key))?.state).toBe('verified');
  });

  it("answers null for another user's key, a missing key and a malformed one, touching no object", async () => {
    const { s3_key } = await presignAndPut(server, alice, 'image/png', readFixture('sample.png'));
    const { verifier: v, store } = verifier();
    expect(await v.status('bob', s3_key)).toBeNull();
    expect(await v.status('alice', s3_key.replace(/file_[^.]+/, 'file_doesnotexist0000000000'))).toBeNull();
    expect(await v.status('alice', '../../etc/passwd')).toBeNull();
    expect(await v.status('alice', s3_key.replace('users/alice/', 'users/bob/'))).toBeNull();
    expect(store.count()).toBe(0);
    // Bob's question did not verify or change Alice's upload.
    expect((await record(s3_key)).state).toBe('uploaded');
  });
});

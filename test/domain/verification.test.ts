import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BYTES } from '../../src/domain/media-types.js';
import { SNIFF_BYTES, Verifier } from '../../src/domain/verification.js';
import { FfprobeMediaProbe } from '../../src/media/ffprobe.js';
import { CountingStore } from '../helpers/counting-store.js';
import { GENUINE, GENUINE_DEEP, GENUINE_MEDIA, HOSTILE_MEDIA, presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';
import type { TestServer } from '../helpers/server.js';

/**
 * The Verifier on a real server's store (the disk store, and S3 on Ceph RGW)
 * and database: uploads go through presigned URLs over real HTTP, and the
 * Verifier reads the same store through a counting delegate, so the store
 * calls it makes can be seen. The probe is the real ffprobe.
 */
const rgw = await rgwForTests('verification suite');

describe.each(['disk', 's3'] as const)('Verifier on the %s store', (storeKind) => {
describe.skipIf(storeKind === 's3' && rgw.skip)(`${storeKind} store behind a real server`, () => {
let server: TestServer;
let alice: string;

beforeAll(async () => {
  server = await startServerOn(storeKind, rgw, 'verify');
  expect(server.store.kind).toBe(storeKind);
  alice = (await server.createKey('alice')).key;
  await server.createKey('bob');
});

afterAll(async () => {
  await server?.stop();
});

/** The record's state once an object arrived: the disk store records arrivals, S3 does not tell (verification finds them). */
const arrivedState = () => (storeKind === 'disk' ? 'uploaded' : 'pending');

const scratchDir = () => path.join(server.dataDir, 'tmp', 'verify');

function verifier(): { verifier: Verifier; store: CountingStore } {
  const store = new CountingStore(server.store);
  return { verifier: new Verifier(server.db, store, { scratchDir: scratchDir(), probe: new FfprobeMediaProbe() }), store };
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
  it('verifies a PNG declared as PNG, recording size, sniffed type, checksum and media', async () => {
    const bytes = readFixture('sample.png');
    const { s3_key } = await presignAndPut(server, alice, 'image/png', bytes);
    const { verifier: v, store } = verifier();
    const status = await v.status('alice', s3_key);
    expect(status).toMatchObject({ s3_key, state: 'verified', content_type: 'image/png', family: 'image', size: bytes.length, max_bytes: MAX_BYTES.image, sniffed_type: 'image/png' });
    if (storeKind === 'disk') expect(status?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(status).not.toHaveProperty('reason');
    // One HEAD, one range of the first bytes, one copy pinned to the ETag the HEAD saw.
    expect(store.calls.map((c) => c.method)).toEqual(['head', 'getRange', 'openVerified']);
    expect(store.calls[2]!.args).toEqual([s3_key, status?.etag]);
    expect(status?.media).toEqual({ width: 16, height: 16, duration_seconds: null, video_codec: 'png', audio_codec: null });
    expect(await record(s3_key)).toMatchObject({
      state: 'verified',
      size: bytes.length,
      sniffed_type: 'image/png',
      sha256: status?.sha256,
      media_width: 16,
      media_height: 16,
      media_duration_seconds: null,
      media_video_codec: 'png',
      media_audio_codec: null,
    });
    // The private copy is gone, and its directory is the server's alone.
    expect(readdirSync(scratchDir())).toEqual([]);
    expect(statSync(scratchDir()).mode & 0o777).toBe(0o700);
  });

  it.each([...GENUINE, ...GENUINE_DEEP])('verifies the genuine $file declared as $contentType, recording its media', async ({ file, contentType, sniffedAs }) => {
    const { s3_key } = await presignAndPut(server, alice, contentType, readFixture(file));
    const status = await verifier().verifier.status('alice', s3_key);
    expect(status).toMatchObject({ state: 'verified', content_type: contentType, sniffed_type: sniffedAs });
    const { duration, ...expected } = GENUINE_MEDIA[file]!;
    expect(status?.media).toMatchObject(expected);
    if (duration) expect(status?.media?.duration_seconds).toBeGreaterThan(0.1);
    else expect(status?.media?.duration_seconds).toBeNull();
  });

  it('reads a second window where a long ID3 tag ends, and a megabyte where a JPEG header needs it, no more', async () => {
    const mp3 = await presignAndPut(server, alice, 'audio/mpeg', readFixture('large-id3.mp3'));
    const a = verifier();
    expect((await a.verifier.status('alice', mp3.s3_key))?.state).toBe('verified');
    const mp3Size = readFixture('large-id3.mp3').length;
    expect(a.store.calls.filter((c) => c.method === 'getRange').map((c) => c.args)).toEqual([
      [mp3.s3_key, 0, SNIFF_BYTES - 1],
      [mp3.s3_key, 70_010, mp3Size - 1],
    ]);

    const jpg = await presignAndPut(server, alice, 'image/jpeg', readFixture('large-exif.jpg'));
    const b = verifier();
    expect((await b.verifier.status('alice', jpg.s3_key))?.state).toBe('verified');
    expect(b.store.calls.filter((c) => c.method === 'getRange').map((c) => c.args)).toEqual([
      [jpg.s3_key, 0, SNIFF_BYTES - 1],
      [jpg.s3_key, 0, readFixture('large-exif.jpg').length - 1],
    ]);
  });

  it('refuses the 8000×8000 PNG from its header: no copy, no probe', async () => {
    const { s3_key } = await presignAndPut(server, alice, 'image/png', readFixture('huge-dimensions.png'));
    const { verifier: v, store } = verifier();
    expect(await v.status('alice', s3_key)).toMatchObject({ state: 'rejected', media: null });
    expect(store.calls.map((c) => c.method)).toEqual(['head', 'getRange', 'delete']);
  });

  it('leaves an object that changed between HEAD and the copy uploaded (inconclusive), and judges it on a later call', async () => {
    const bytes = readFixture('sample.png');
    const { s3_key } = await presignAndPut(server, alice, 'image/png', bytes);
    // A store whose copy sees another ETag than the HEAD did: what a PUT landing between the two looks like.
    const inner = server.store;
    const swapping = new CountingStore({
      kind: inner.kind,
      presignPut: (i) => inner.presignPut(i),
      presignGet: (k, e, r) => inner.presignGet(k, e, r),
      head: (k) => inner.head(k),
      getRange: (k, s, e) => inner.getRange(k, s, e),
      openVerified: (k, etag) => inner.openVerified(k, `"not-${etag.replaceAll('"', '')}"`),
      put: (k, b, c) => inner.put(k, b, c),
      delete: (k) => inner.delete(k),
      list: (p) => inner.list(p),
      createMultipart: (i) => inner.createMultipart(i),
      presignPart: (i) => inner.presignPart(i),
      listParts: (k, u) => inner.listParts(k, u),
      completeMultipart: (k, u, p) => inner.completeMultipart(k, u, p),
      abortMultipart: (k, u) => inner.abortMultipart(k, u),
    });
    const v = new Verifier(server.db, swapping, { scratchDir: scratchDir(), probe: new FfprobeMediaProbe() });
    expect(await v.status('alice', s3_key)).toMatchObject({ state: 'uploaded', media: null });
    expect((await record(s3_key)).state).toBe(arrivedState());
    expect(await server.store.head(s3_key)).not.toBeNull();
    expect(readdirSync(scratchDir())).toEqual([]);
    expect((await verifier().verifier.status('alice', s3_key))?.state).toBe('verified');
  });

  it('answers a verified upload from the database alone the second time', async () => {
    const { s3_key } = await presignAndPut(server, alice, 'video/mp4', readFixture('sample.mp4'));
    const { verifier: v, store } = verifier();
    const first = await v.status('alice', s3_key);
    expect(store.count()).toBe(3);
    const second = await v.status('alice', s3_key);
    expect(store.count()).toBe(3);
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

  it('reads only the first bytes of a large object by range; the probe reads a pinned copy', async () => {
    // A genuine PNG followed by padding: 256 KiB in all, four times what the check reads.
    const bytes = Buffer.concat([readFixture('sample.png'), Buffer.alloc(256 * 1024)]);
    const { s3_key } = await presignAndPut(server, alice, 'image/png', bytes);
    const { verifier: v, store } = verifier();
    expect((await v.status('alice', s3_key))?.state).toBe('verified');
    expect(store.calls.filter((c) => c.method === 'getRange').map((c) => c.args)).toEqual([[s3_key, 0, SNIFF_BYTES - 1]]);
    expect(store.count('openVerified')).toBe(1);
  });

  describe('rejects and deletes', () => {
    it.each(HOSTILE_MEDIA)('$file declared as $contentType, naming what was wrong', async ({ file, contentType, reason }) => {
      const { s3_key } = await presignAndPut(server, alice, contentType, readFixture(file));
      const status = await expectRejected(s3_key, reason);
      expect(status.media).toBeNull();
      expect(readdirSync(scratchDir(), { withFileTypes: true }).filter((e) => e.isFile())).toEqual([]);
    });

    it('a file whose probe is stopped by a limit (here: ffprobe writing more than a 10-byte output limit)', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'image/png', readFixture('sample.png'));
      const store = new CountingStore(server.store);
      const v = new Verifier(server.db, store, { scratchDir: scratchDir(), probe: new FfprobeMediaProbe(undefined, 10) });
      expect(await v.status('alice', s3_key)).toMatchObject({
        state: 'rejected',
        reason: 'the image/png file was not probed to the end: ffprobe was stopped for writing too much output',
      });
      expect(await server.store.head(s3_key)).toBeNull();
      expect(readdirSync(scratchDir())).toEqual([]);
    });

    it('a genuine MP3 behind an ID3 tag that runs past the end of the object', async () => {
      const bytes = Buffer.from(readFixture('large-id3.mp3').subarray(0, 50_000));
      const { s3_key } = await presignAndPut(server, alice, 'audio/mpeg', bytes);
      await expectRejected(s3_key, /the ID3 tag at byte 0 runs to byte 70010, past the end of the 50000-byte object/);
    });

    it('FLAC behind an ID3 tag (not a place FLAC carries one)', async () => {
      const flac = readFixture('sample.flac');
      const tag = Buffer.from([0x49, 0x44, 0x33, 4, 0, 0, 0, 0, 0, 16, ...Buffer.alloc(16)]);
      const { s3_key } = await presignAndPut(server, alice, 'audio/flac', Buffer.concat([tag, flac]));
      await expectRejected(s3_key, /an ID3 tag precedes the audio\/flac data: only audio\/mpeg and audio\/aac/);
    });

    it('an ffconcat list behind an ID3 tag declared as MP3', async () => {
      const tag = Buffer.from([0x49, 0x44, 0x33, 3, 0, 0, 0, 0, 0, 8, ...Buffer.alloc(8)]);
      const list = Buffer.from('ffconcat version 1.0\nfile /etc/passwd\n');
      const { s3_key } = await presignAndPut(server, alice, 'audio/mpeg', Buffer.concat([tag, list]));
      await expectRejected(s3_key, /ffmpeg concat list \(ffconcat version\) at byte 18/);
    });

    it('an MP3 whose audio frames are noise', async () => {
      const { s3_key } = await presignAndPut(server, alice, 'audio/mpeg', Buffer.concat([Buffer.from([0xff, 0xfb, 0x90, 0x44]), readFixture('random.bin')]));
      await expectRejected(s3_key, /could not be decoded|not a recognised audio format|could not be read/);
    });

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


  it('moves pending → uploaded → verified', async () => {
    const { s3_key, upload_url } = await presignAndPut(server, alice, 'audio/flac', null);
    const { verifier: v } = verifier();
    expect(await v.status('alice', s3_key)).toMatchObject({ state: 'pending', size: null });
    expect((await record(s3_key)).state).toBe('pending');

    const bytes = readFixture('sample.flac');
    const res = await fetch(upload_url, { method: 'PUT', headers: { 'content-type': 'audio/flac' }, body: new Uint8Array(bytes) });
    expect(res.status).toBe(200);
    if (storeKind === 'disk') expect(await record(s3_key)).toMatchObject({ state: 'uploaded', size: bytes.length });

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
    expect((await record(s3_key)).state).toBe(arrivedState());
  });
});
});
});

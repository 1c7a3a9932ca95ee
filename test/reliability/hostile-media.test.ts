import { createHash } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENUINE, HOSTILE_MEDIA, presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';
import type { TestServer } from '../helpers/server.js';
import { filesUnder, leaks } from './support/checks.js';

/**
 * Hostile media (issue 16) through the real status endpoint of a real server,
 * on the disk store and on S3 (Ceph RGW): containers in disguise (ID3 prefixes
 * hiding playlists, HTML or truncation), polyglots, undecodable image data and
 * pixel bombs, as checked-in fixtures and as seeded variants built here. Each
 * must end `rejected` with a reason naming what was wrong, its object deleted,
 * no scratch copy left behind, and the server still verifying genuine files.
 * Bounded: a fixed number of cases (VARIANTS per class), each one request.
 */
const rgw = await rgwForTests('hostile media suite');
const VARIANTS = 6;

/** Seeded bytes (SHA-256 in counter mode): the same every run. */
function noise(bytes: number, seed: string): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; blocks.length * 32 < bytes; i++) blocks.push(createHash('sha256').update(`${seed}-${i}`).digest());
  return Buffer.concat(blocks).subarray(0, bytes);
}

/** A seeded integer in [min, max]. */
const seeded = (seed: string, min: number, max: number) => min + (noise(4, seed).readUInt32BE(0) % (max - min + 1));

function id3(bodyLength: number, version = 4): Buffer {
  const header = Buffer.from([0x49, 0x44, 0x33, version, 0, 0, 0, 0, 0, 0]);
  for (let i = 0; i < 4; i++) header[6 + i] = (bodyLength >> (7 * (3 - i))) & 0x7f;
  return Buffer.concat([header, Buffer.alloc(bodyLength)]);
}

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function pngChunk(type: string, data: Buffer): Buffer {
  const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  let c = 0xffffffff;
  for (const b of typed) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8);
  const out = Buffer.alloc(8 + data.length + 4);
  out.writeUInt32BE(data.length, 0);
  typed.copy(out, 4);
  out.writeUInt32BE((c ^ 0xffffffff) >>> 0, 8 + data.length);
  return out;
}
function png(width: number, height: number, idat: Buffer): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, pngChunk('IHDR', ihdr), pngChunk('IDAT', idat), pngChunk('IEND', Buffer.alloc(0))]);
}

interface Case {
  name: string;
  contentType: string;
  bytes: Buffer;
  reason: RegExp;
}

const PLAYLIST = Buffer.from('#EXTM3U\n#EXTINF:1.0,\n../../../objects/users/bob/user-uploads/b/f.mp3\n#EXTINF:1.0,\n/etc/passwd\n#EXT-X-ENDLIST\n');
const HTML = ['<html><script>alert(1)</script>', '<SCRIPT SRC=//x>', '<svg onload=alert(1)>', '<!DOCTYPE html><p>', '<iframe src=/api>'];

/** Seeded variants of each class: ID3 lengths around the 64 KiB window, markup at varying offsets, noise of several seeds, dimensions over each limit. */
function variants(): Case[] {
  const cases: Case[] = [];
  const mp3 = readFixture('sample.mp3');
  const gif = readFixture('sample.gif');
  for (let i = 0; i < VARIANTS; i++) {
    const tagLength = seeded(`tag-${i}`, 60_000, 90_000);
    cases.push({ name: `ID3 (${tagLength} B) + HLS playlist as MP3`, contentType: 'audio/mpeg', bytes: Buffer.concat([id3(tagLength), PLAYLIST]), reason: /#EXTM3U/ });
    cases.push({
      name: `two ID3 tags + ffconcat list as AAC (#${i})`,
      contentType: 'audio/aac',
      bytes: Buffer.concat([id3(seeded(`a-${i}`, 10, 70_000)), id3(seeded(`b-${i}`, 10, 2000), 3), Buffer.from('ffconcat version 1.0\nfile /etc/passwd\n')]),
      reason: /ffconcat version/,
    });
    cases.push({
      name: `ID3 (${tagLength} B) + a genuine PNG`,
      contentType: 'image/png',
      bytes: Buffer.concat([id3(tagLength), readFixture('sample.png')]),
      reason: /an ID3 tag precedes the image\/png data/,
    });
    const at = seeded(`html-at-${i}`, 0, 4000);
    const markup = HTML[i % HTML.length]!;
    cases.push({
      name: `GIF with ${markup} after ${at} bytes of its own`,
      contentType: 'image/gif',
      bytes: Buffer.concat([gif.subarray(0, Math.min(at, gif.length)), Buffer.from(markup), gif.subarray(Math.min(at, gif.length))]),
      reason: /(HTML|script) markup .* an HTML polyglot/,
    });
    cases.push({ name: `PNG with noise for image data (seed ${i})`, contentType: 'image/png', bytes: png(64, 64, noise(seeded(`n-${i}`, 1000, 200_000), `idat-${i}`)), reason: /the image data could not be decoded/ });
    const side = seeded(`side-${i}`, 8193, 60_000);
    cases.push({ name: `PNG declaring ${side}×16`, contentType: 'image/png', bytes: png(side, 16, Buffer.alloc(16)), reason: /pixels a side/ });
    const square = seeded(`sq-${i}`, 6400, 8192);
    cases.push({ name: `PNG declaring ${square}×${square}`, contentType: 'image/png', bytes: png(square, square, Buffer.alloc(16)), reason: /MP\), over the limit of 40 MP/ });
  }
  // A truncated genuine MP3 behind an ID3 tag that claims more than the object holds.
  cases.push({ name: 'an ID3 tag running past the end', contentType: 'audio/mpeg', bytes: Buffer.concat([id3(100_000).subarray(0, 30_000), mp3]), reason: /past the end of the/ });
  return cases;
}

describe.each(['disk', 's3'] as const)('hostile media: %s store', (storeKind) => {
  describe.skipIf(storeKind === 's3' && rgw.skip)(`through GET /api/uploads/status (${storeKind})`, () => {
    let server: TestServer;
    let alice: string;

    beforeAll(async () => {
      server = await startServerOn(storeKind, rgw, 'hostile-media');
      alice = (await server.createKey('alice')).key;
    });

    afterAll(async () => {
      await server?.stop();
    });

    async function expectRejected(c: Case) {
      const { s3_key } = await presignAndPut(server, alice, c.contentType, c.bytes);
      const res = await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(s3_key)}`, { key: alice });
      expect(res.status, c.name).toBe(200);
      expect(res.body, c.name).toMatchObject({ state: 'rejected', media: null });
      expect(res.body.reason, c.name).toMatch(c.reason);
      expect(leaks(JSON.stringify(res.body)), c.name).toBeNull();
      expect(await server.store.head(s3_key), `${c.name}: object deleted`).toBeNull();
      // Remembered: asking again answers the same from the database.
      expect((await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(s3_key)}`, { key: alice })).body).toEqual(res.body);
    }

    it.each(HOSTILE_MEDIA)('rejects the fixture $file declared as $contentType', async ({ file, contentType, reason }) => {
      await expectRejected({ name: file, contentType, bytes: readFixture(file), reason });
    });

    it(`rejects ${VARIANTS} seeded variants of every class, with a reason each`, async () => {
      for (const c of variants()) await expectRejected(c);
    });

    it('rejects 8 undecodable PNGs asked about at once, leaving no scratch copy, and still verifies a genuine file', async () => {
      const keys = await Promise.all(
        Array.from({ length: 8 }, (_, i) => presignAndPut(server, alice, 'image/png', png(32, 32, noise(50_000, `burst-${i}`))).then((p) => p.s3_key)),
      );
      const answers = await Promise.all(keys.map((k) => server.api('GET', `/api/uploads/status?key=${encodeURIComponent(k)}`, { key: alice })));
      for (const res of answers) expect(res.body).toMatchObject({ state: 'rejected', reason: 'the image data could not be decoded' });
      expect(await filesUnder(path.join(server.dataDir, 'tmp', 'verify'))).toEqual([]);

      for (const { file, contentType } of GENUINE) {
        const { s3_key } = await presignAndPut(server, alice, contentType, readFixture(file));
        const res = await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(s3_key)}`, { key: alice });
        expect(res.body, file).toMatchObject({ state: 'verified' });
        expect(res.body.media, file).not.toBeNull();
      }
    });
  });
});

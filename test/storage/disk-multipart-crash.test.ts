import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { DiskStore } from '../../src/storage/disk/disk-store.js';
import { killChildren, spawnTsChild } from '../helpers/child-process.js';

// A SIGKILL while the disk store completes a multipart upload leaves either the whole object or
// none, never a torn one or torn metadata; the parts survive a restart, so completing again after
// start-up works (before the commit point it assembles afresh; after it, it recognises the stored
// bytes, answers the object and removes the upload).

const MiB = 1024 * 1024;
const SECRET = 'crash-test-secret';
const KEY = 'users/alice/user-uploads/crash/video.mp4';

afterEach(() => killChildren());

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

function openStore(root: string): DiskStore {
  return new DiskStore({ root, publicUrl: 'http://127.0.0.1:9', signingSecret: SECRET });
}

/** Starts an upload of `parts` on a fresh store, each part received as the HTTP route would hand it over. */
async function prepared(parts: Buffer[]): Promise<{ root: string; uploadId: string; list: { partNumber: number; etag: string }[] }> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'kf-multipart-crash-'));
  const store = openStore(root);
  await store.init();
  const { uploadId } = await store.createMultipart({ key: KEY, contentType: 'video/mp4' });
  const list: { partNumber: number; etag: string }[] = [];
  for (const [i, bytes] of parts.entries()) {
    const url = new URL(await store.presignPart({ key: KEY, uploadId, partNumber: i + 1, contentLength: bytes.length, expiresInSeconds: 300 }));
    const part = await store.receivePart(
      { method: 'PUT', rawUrl: url.pathname + url.search, headers: { 'content-length': String(bytes.length) } },
      Readable.from([bytes]),
    );
    list.push({ partNumber: part.partNumber, etag: part.etag });
  }
  return { root, uploadId, list };
}

/** Every metadata file under the store parses (a torn one would not). */
async function metaFiles(root: string): Promise<unknown[]> {
  const dir = path.join(root, 'meta');
  const names = (await fsp.readdir(dir, { recursive: true })).filter((n) => n.endsWith('.json'));
  return Promise.all(names.map(async (n) => JSON.parse(await fsp.readFile(path.join(dir, n), 'utf8')) as unknown));
}

describe('disk store: a multipart completion killed with SIGKILL', () => {
  // Eight parts of 8 MiB: 64 MiB assembled.
  const parts = Array.from({ length: 8 }, () => randomBytes(8 * MiB));
  const whole = Buffer.concat(parts);

  it.each([
    ['assembly', 'mid-assembly (two of eight parts streamed)', false],
    ['meta', 'after the metadata, before the object is linked', false],
    ['drop', 'after the commit point, before the parts are removed', true],
  ] as const)('killed at %s (%s): whole or absent, and completing again works', async (stopAt, _when, committed) => {
    const { root, uploadId, list } = await prepared(parts);
    try {
      const child = spawnTsChild('test/storage/support/multipart-complete-child.ts', {
        ROOT: root,
        KEY,
        UPLOAD_ID: uploadId,
        PARTS: JSON.stringify(list),
        STOP_AT: stopAt,
      });
      await new Promise<void>((resolve, reject) => {
        child.child.stdout!.on('data', () => child.out().includes('stopped') && resolve());
        void child.exited.then(() => reject(new Error(`child exited before stopping: ${child.out()} ${child.err()}`)));
      });
      if (stopAt === 'assembly') {
        // The assembled file is under way in tmp/.
        const tmp = await fsp.readdir(path.join(root, 'tmp'));
        expect(tmp.filter((n) => n.endsWith('.part'))).toHaveLength(1);
      }
      await child.kill();

      // No torn metadata: what is there parses, and describes the whole object when it is there.
      const metas = await metaFiles(root);
      expect(metas).toHaveLength(stopAt === 'assembly' ? 0 : 1);
      for (const meta of metas) expect(meta).toEqual({ contentType: 'video/mp4', sha256: sha256(whole), size: whole.length });

      // Start-up after the crash.
      const store = openStore(root);
      await store.init();
      expect(await fsp.readdir(path.join(root, 'tmp'))).toEqual([]);
      const head = await store.head(KEY);
      if (committed) {
        expect(head).toMatchObject({ size: whole.length, sha256: sha256(whole) });
      } else {
        expect(head).toBeNull();
        expect(await store.getRange(KEY, 0, 15)).toBeNull();
      }
      // The parts survived.
      expect(await store.listParts(KEY, uploadId)).toEqual(list.map((p, i) => ({ ...p, size: parts[i]!.length })));

      const info = await store.completeMultipart(KEY, uploadId, list);
      expect(info).toMatchObject({ size: whole.length, contentType: 'video/mp4', sha256: sha256(whole) });
      expect(await store.head(KEY)).toMatchObject({ size: whole.length, sha256: sha256(whole), etag: info.etag });
      expect(await store.getRange(KEY, 8 * MiB - 4, 8 * MiB + 3)).toEqual(whole.subarray(8 * MiB - 4, 8 * MiB + 4));
      expect(await store.listParts(KEY, uploadId)).toBe('missing');
      expect(await fsp.readdir(path.join(root, 'multipart'))).toEqual([]);
      expect(await fsp.readdir(path.join(root, 'tmp'))).toEqual([]);
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});

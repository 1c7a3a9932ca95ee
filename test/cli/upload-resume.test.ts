import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ensureBuilt, ROOT, runKeyframe } from '../helpers/build.js';
import { padMp4, readFixture } from '../helpers/media-fixtures.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';
import { QUOTAS_LIFTED, type TestServer } from '../helpers/server.js';
import { tcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

/**
 * Issue 13's resume: `keyframe upload` of a file above the multipart threshold is SIGKILLed once
 * half its parts are on the server; the same command run again lists them, sends only the rest
 * and completes; the object is the file, verified. The parts go through a loopback proxy that
 * caps the uplink, so the first run is still sending when it is killed (the cap bounds its speed,
 * whatever the machine's load), and that counts what the second run sent.
 */

const rgw = await rgwForTests('upload resume');

const MiB = 1024 * 1024;
/** Just past the CLI's multipart threshold (100 MiB): 21 parts of 5 MiB. */
const FILE_SIZE = 101 * MiB + 12_345;
const UPLINK_BYTES_PER_SECOND = 24 * MiB;

interface JournalEntry {
  key: string;
  uploadId: string;
  partSize: number;
}

describe.each(['disk', 's3'] as const)('keyframe upload resumes a multipart upload it was killed in: %s store', (storeKind) => {
  describe.skipIf(storeKind === 's3' && rgw.skip)(`${storeKind}`, () => {
    let scratch: string;
    let file: string;
    let bytes: Buffer;
    let proxy: TcpProxy;
    let server: TestServer;
    let apiKey: string;
    let cliEnv: Record<string, string>;

    beforeAll(async () => {
      ensureBuilt();
      scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-resume-'));
      bytes = padMp4(readFixture('sample.mp4'), FILE_SIZE);
      file = path.join(scratch, 'big.mp4');
      await writeFile(file, bytes);
      // The proxy stands where the part URLs point: the server itself (disk store) or RGW.
      const target = { host: '127.0.0.1', port: storeKind === 's3' ? Number(new URL(rgw.endpoint).port || 80) : 0 };
      proxy = await tcpProxy(target, { bytesPerSecond: UPLINK_BYTES_PER_SECOND });
      const through = `http://127.0.0.1:${proxy.port}`;
      server = await startServerOn(storeKind, rgw, 'resume', {
        ...QUOTAS_LIFTED,
        ...(storeKind === 's3' ? { S3_ENDPOINT: through } : { KEYFRAME_PUBLIC_URL: through }),
      });
      if (storeKind === 'disk') target.port = Number(new URL(server.url).port);
      apiKey = (await server.createKey('resumer')).key;
      cliEnv = {
        PATH: process.env.PATH ?? '',
        KEYFRAME_URL: storeKind === 's3' ? server.url : through,
        KEYFRAME_API_KEY: apiKey,
        XDG_STATE_HOME: path.join(scratch, 'state'),
      };
    }, 120_000);

    afterAll(async () => {
      await server?.stop();
      await proxy?.close();
      if (scratch) await rm(scratch, { recursive: true, force: true });
    }, 60_000);

    const journalFile = () => path.join(scratch, 'state', 'keyframe', 'uploads.json');
    const journal = async (): Promise<JournalEntry[]> => {
      try {
        return Object.values(JSON.parse(await readFile(journalFile(), 'utf8')) as Record<string, JournalEntry>);
      } catch {
        return [];
      }
    };
    const listed = async (entry: JournalEntry) => {
      const answer = await server.api('GET', `/api/s3/multipart/${encodeURIComponent(entry.uploadId)}?key=${encodeURIComponent(entry.key)}`, { key: apiKey });
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      return answer.body as { PartNumber: number; Size: number; ETag: string }[];
    };

    it('SIGKILL after half the parts; the same command sends only the missing parts and completes; verified, the same bytes', async () => {
      const first = spawn(process.execPath, [BIN, 'upload', file], { cwd: ROOT, env: cliEnv, stdio: 'ignore' });
      const exited = new Promise<number | null>((resolve) => first.once('exit', (code) => resolve(code)));
      let entry: JournalEntry | undefined;
      let partCount = 0;
      try {
        entry = await until(async () => (await journal())[0], 30_000, 'the journal to name the upload');
        partCount = Math.ceil(FILE_SIZE / entry.partSize);
        expect(partCount).toBe(21);
        await until(async () => (await listed(entry!)).length >= Math.ceil(partCount / 2) || undefined, 60_000, 'half the parts to be listed');
      } finally {
        kill(first);
      }
      expect(await exited, 'the first run was killed, not finished').toBeNull();
      // What the dead process had already handed to its sockets still reaches the store (a part may
      // still complete): the listing is read once nothing has crossed the proxy for a second.
      await until(settled(proxy), 30_000, 'the first run’s last bytes to arrive');

      // Parts cut by the kill are not listed; what is listed stays the same for the second run.
      const held = await listed(entry);
      expect(held.length).toBeGreaterThanOrEqual(Math.ceil(partCount / 2));
      expect(held.length).toBeLessThan(partCount);
      for (const part of held) expect(part.Size).toBe(entry.partSize);
      const missingBytes = FILE_SIZE - held.reduce((sum, part) => sum + part.Size, 0);

      const sentBefore = proxy.bytesSent();
      const second = await runKeyframe(['upload', file], cliEnv);
      expect(second.code, second.stderr).toBe(0);
      expect(second.stderr).toContain(`resuming the multipart upload of ${entry.key}`);
      expect(second.stdout.trim()).toBe(`${entry.key}\tverified`);
      // Only the missing parts crossed the uplink again, plus request heads.
      const sent = proxy.bytesSent() - sentBefore;
      expect(sent).toBeGreaterThanOrEqual(missingBytes);
      expect(sent).toBeLessThan(missingBytes + MiB);

      expect(await journal(), 'a completed upload leaves the journal').toEqual([]);
      const status = await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(entry.key)}`, { key: apiKey });
      expect(status.body).toMatchObject({ state: 'verified', size: FILE_SIZE, content_type: 'video/mp4' });
      const stored = await server.store.getRange(entry.key, 0, FILE_SIZE - 1);
      expect(stored?.length).toBe(FILE_SIZE);
      expect(sha256(stored!)).toBe(sha256(bytes));
    }, 240_000);
  });
});

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A probe that answers once `proxy` has forwarded nothing for 1 s. */
function settled(proxy: TcpProxy): () => Promise<true | undefined> {
  let last = proxy.bytesSent();
  let since = Date.now();
  return async () => {
    const now = proxy.bytesSent();
    if (now !== last) [last, since] = [now, Date.now()];
    return Date.now() - since >= 1000 || undefined;
  };
}

function kill(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/** Polls `probe` every 50 ms until it yields a value; fails naming `what` after `timeoutMs`. */
async function until<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

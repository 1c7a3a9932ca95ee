import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { GenerationJob, JobReference } from '../../src/domain/generations/job.js';
import { RunnerFailure } from '../../src/domain/generations/runner.js';
import { renderLimits } from '../../src/media/limits.js';
import { LocalRunner } from '../../src/runners/local/local-runner.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { CountingStore } from '../helpers/counting-store.js';
import { garbagePng, id3HlsPlaylist, makeFlatPng, makeLoudTone, maxVolumeDb, probe, runnerJob, storeReference } from '../helpers/generations.js';
import { presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName } from '../helpers/rgw.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * The local runner as the worker drives it, against a real server's store (the
 * disk store, and Ceph RGW): references are read from the store pinned to the
 * verified ETag into a private directory, and ffmpeg opens each with its
 * verified type's demuxer under CPU, memory and time limits. Hostile bytes are
 * put straight into the store (a test seam past verification, which refuses
 * them on its own).
 */
const rgw = await rgwForTests('local runner');
const controllers: AbortController[] = [];
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-runner-test-'));
});
afterEach(() => {
  // Whatever a failed test left rendering is killed with its process group.
  for (const c of controllers.splice(0)) c.abort(new Error('test over'));
});
afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

function runnerOn(server: TestServer, store: ObjectStore = server.store): LocalRunner {
  return new LocalRunner({ store, workDir: path.join(server.dataDir, 'tmp', 'generations'), log: () => {} });
}

/** Runs the job; resolves with the rendered file (downloaded from the store) or the failure message. */
async function render(runner: LocalRunner, store: ObjectStore, job: GenerationJob): Promise<{ file: string } | { failed: string }> {
  const controller = new AbortController();
  controllers.push(controller);
  try {
    const video = await runner.run(job, controller.signal);
    const bytes = await store.getRange(video.key, 0, 200 * 1024 * 1024);
    const file = path.join(scratch, `${job.id}.mp4`);
    await writeFile(file, bytes!);
    return { file };
  } catch (err) {
    if (err instanceof RunnerFailure) return { failed: err.message };
    throw err;
  }
}

/** A store that, the first time the runner reads `key`, first runs `before` (e.g. a replay of an upload URL). */
class HookedStore extends CountingStore {
  private fired = false;
  constructor(
    inner: ObjectStore,
    private readonly key: string,
    private readonly before: () => Promise<void>,
  ) {
    super(inner);
  }
  private async trigger(key: string): Promise<void> {
    if (key !== this.key || this.fired) return;
    this.fired = true;
    await this.before();
  }
  override async openVerified(key: string, etag: string): Promise<Readable | 'changed' | 'missing'> {
    await this.trigger(key);
    return super.openVerified(key, etag);
  }
  override async presignGet(...args: Parameters<ObjectStore['presignGet']>): Promise<string> {
    await this.trigger(args[0]);
    return super.presignGet(...args);
  }
}

const stores = [
  { name: 'disk store', env: () => ({}), skip: false },
  { name: 'Ceph RGW', env: (bucket: string) => s3ServerEnv(rgw, bucket), skip: rgw.skip },
] as const;

for (const storage of stores) {
  describe.skipIf(storage.skip)(`local runner on the ${storage.name}`, () => {
    let server: TestServer;
    let bucket: string;
    let alice: string;

    beforeAll(async () => {
      bucket = uniqueBucketName('runner');
      server = await startTestServer({ ...storage.env(bucket), KEYFRAME_GENERATION_CONCURRENCY: '1' });
      alice = (await server.createKey('alice')).key;
    });
    afterAll(async () => {
      await server?.stop();
      if (storage.name === 'Ceph RGW' && !storage.skip) await removeBucket(rgw, bucket).catch(() => {});
    });

    it('renders genuine references copied from the store, and reads none through a URL', async () => {
      const store = new CountingStore(server.store);
      const png = await storeReference(server.store, 'alice', 'startFrameKey', 'image/png', readFixture('sample.png'));
      const mp3 = await storeReference(server.store, 'alice', 'audioKey', 'audio/mpeg', readFixture('sample.mp3'));
      const mp4 = await storeReference(server.store, 'alice', 'sourceVideoKey', 'video/mp4', readFixture('sample.mp4'));
      const outcome = await render(runnerOn(server, store), server.store, runnerJob('alice', [png, mp4, mp3], { durationSeconds: 2, duration: '2s' }));
      expect(outcome).toEqual({ file: expect.any(String) });
      const video = await probe((outcome as { file: string }).file);
      expect(video.video).toMatchObject({ codec_name: 'h264', width: 854, height: 480 });
      expect(video.audio).toMatchObject({ codec_name: 'aac' });
      expect(store.count('presignGet')).toBe(0);
      expect(store.calls.filter((c) => c.method === 'openVerified').map((c) => c.args)).toEqual([png, mp4, mp3].map((r) => [r.key, r.etag]));
    });

    it('fails with "replaced" a reference whose object changed or vanished since it was verified', async () => {
      const png = await storeReference(server.store, 'alice', 'startFrameKey', 'image/png', readFixture('sample.png'));
      const end = await storeReference(server.store, 'alice', 'endFrameKey', 'image/png', readFixture('sample.png'));
      const red = await makeFlatPng(path.join(scratch, 'red.png'), 'red');
      // S3 lets an object be replaced; the disk store writes a key once, so there only removal can change it.
      const replaced = await server.store.put(png.key, Readable.from([red]), 'image/png').then(() => true, () => false);
      if (storage.name === 'Ceph RGW') expect(replaced).toBe(true);
      if (replaced) {
        expect(await render(runnerOn(server), server.store, runnerJob('alice', [png]))).toEqual({ failed: 'startFrameKey: the upload was replaced or removed after it was verified' });
      }
      await server.store.delete(end.key);
      expect(await render(runnerOn(server), server.store, runnerJob('alice', [end]))).toEqual({ failed: 'endFrameKey: the upload was replaced or removed after it was verified' });
    });

    it('fails a reference without a recorded ETag (a job queued before ETags were kept), naming it', async () => {
      const png = await storeReference(server.store, 'alice', 'startFrameKey', 'image/png', readFixture('sample.png'));
      const outcome = await render(runnerOn(server), server.store, runnerJob('alice', [{ ...png, etag: null }]));
      expect(outcome).toEqual({ failed: expect.stringMatching(/^startFrameKey: this generation was queued before its references were pinned/) });
    });

    it('swap (finding 4a): a second PUT of the upload URL while the runner reads the other references never reaches ffmpeg', async () => {
      // Verified through the API, as a client would: the recorded ETag is the one verification saw.
      const first = await presignAndPut(server, alice, 'image/png', readFixture('sample.png'));
      const victim = await presignAndPut(server, alice, 'image/png', readFixture('sample.png'));
      const references: JobReference[] = [];
      for (const [field, upload] of [['startFrameKey', first], ['endFrameKey', victim]] as const) {
        const status = await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(upload.s3_key)}`, { key: alice });
        expect(status.body.state).toBe('verified');
        references.push({ field, key: upload.s3_key, contentType: 'image/png', family: 'image', etag: (await server.store.head(upload.s3_key))!.etag });
      }
      const other = await makeFlatPng(path.join(scratch, 'other.png'), 'red', '640x480');
      let replay = 0;
      // The moment the runner starts reading the first reference, the victim's still-valid URL gets other bytes.
      const store = new HookedStore(server.store, first.s3_key, async () => {
        const res = await fetch(victim.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(other) });
        await res.arrayBuffer();
        replay = res.status;
      });
      const outcome = await render(runnerOn(server, store), server.store, runnerJob('alice', references));
      if (replay === 200) {
        // S3 accepts a replay of a presigned PUT: the pinned read is what holds.
        expect(outcome).toEqual({ failed: 'endFrameKey: the upload was replaced or removed after it was verified' });
      } else {
        // The disk store writes an upload key once: the other bytes never existed, and the job renders the verified ones.
        expect([403, 409]).toContain(replay);
        expect(outcome).toEqual({ file: expect.any(String) });
        expect((await server.store.head(victim.s3_key))!.etag).toBe(references[1]!.etag);
      }
    });

    it('garbage-data PNG (valid header, undecodable data) fails with the render error in seconds, not at the job limit', async () => {
      const png = await storeReference(server.store, 'alice', 'startFrameKey', 'image/png', garbagePng());
      const started = Date.now();
      const outcome = await render(runnerOn(server), server.store, runnerJob('alice', [png]));
      expect(outcome).toEqual({ failed: 'Generation failed: the references could not be rendered' });
      console.log(`garbage PNG on the ${storage.name}: failed after ${Date.now() - started} ms (limits: ${JSON.stringify(renderLimits(1))})`);
    }, 60_000);
  });
}

describe('local runner: ID3 + HLS playlist "MP3" naming another user\'s file (finding 1)', () => {
  let server: TestServer;
  let bobTone: JobReference;

  beforeAll(async () => {
    server = await startTestServer();
    await mkdir(scratch, { recursive: true });
    bobTone = await storeReference(server.store, 'bob', 'audioKey', 'audio/mpeg', await makeLoudTone(path.join(scratch, 'tone.mp3')));
  });
  afterAll(async () => {
    await server?.stop();
  });

  const targets = {
    'absolute path': () => path.join(server.dataDir, 'objects', bobTone.key),
    // From the job's directory <data>/tmp/generations/<job>/, where the old runner kept the file.
    'relative path': () => `../../../objects/${bobTone.key}`,
  };

  for (const [name, target] of Object.entries(targets)) {
    it(`${name}: the job fails, or its audio is silent, never the other user's tone`, async () => {
      const hostile = await storeReference(server.store, 'alice', 'audioKey', 'audio/mpeg', id3HlsPlaylist(target()));
      const outcome = await render(runnerOn(server), server.store, runnerJob('alice', [hostile], { durationSeconds: 2, duration: '2s' }));
      if ('failed' in outcome) expect(outcome.failed).toBe('Generation failed: the references could not be rendered');
      else {
        const loudest = await maxVolumeDb(outcome.file);
        expect(loudest === null || loudest < -50, `max_volume ${loudest} dB: the playlist's target was rendered`).toBe(true);
      }
    });
  }

  it('the tone itself is loud (the check above can see it)', async () => {
    const outcome = await render(runnerOn(server), server.store, runnerJob('alice', [bobTone], { durationSeconds: 2, duration: '2s' }));
    expect(outcome).toEqual({ file: expect.any(String) });
    expect(await maxVolumeDb((outcome as { file: string }).file)).toBeGreaterThan(-10);
  });
});

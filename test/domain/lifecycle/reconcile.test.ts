import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../../src/domain/ids.js';
import { findDrift, repairDrift } from '../../../src/domain/lifecycle/reconcile.js';
import { generationReferenceCopyKey, generationStagingKey, generationVideoKey, newUploadKey } from '../../../src/domain/object-keys.js';
import { presignAndPut, readFixture } from '../../helpers/media-fixtures.js';
import { rgwForTests, startServerOn } from '../../helpers/rgw.js';
import type { TestServer } from '../../helpers/server.js';

// The reconciliation's judgement of every kind of key (src/domain/lifecycle/reconcile.ts), on both
// stores and both databases: which objects a record accounts for, which are orphans and why, which
// records lost their object; and a repair that only removes what is still unaccounted for.

const rgw = await rgwForTests('reconciliation suite');
const MP4 = readFixture('sample.mp4');
const PNG = readFixture('sample.png');
/** Ages are measured from a moment an hour on: every planted object is past the floor, without waiting. */
const LATER = () => new Date(Date.now() + 3600_000);
const FLOOR = 900;

describe.each(['disk', 's3'] as const)('reconciliation on the %s store', (storeKind) => {
  describe.skipIf(storeKind === 's3' && rgw.skip)('findDrift and repairDrift', () => {
    let server: TestServer;
    let apiKey: string;
    const user = 'recon';

    beforeAll(async () => {
      server = await startServerOn(storeKind, rgw, 'reconcile');
      apiKey = (await server.createKey(user)).key;
    }, 60_000);
    afterAll(async () => server?.stop());

    async function generation(status: 'generating' | 'completed' | 'failed', videoKey: string | null, videoDeleted = false): Promise<string> {
      const id = randomId('gen');
      const now = new Date().toISOString();
      await server.db
        .insertInto('generations')
        .values({
          id, user_id: user, model_name: 'keyframe-local', prompt: 'p', params: '{"references":[]}', template_id: null, webhook_url: null,
          status, error: null, attempts: 1, video_key: videoKey === null ? null : videoKey.replace('GEN', id), created_at: now,
          started_at: now, completed_at: status === 'generating' ? null : now, worker_id: null, lease_expires_at: null,
          video_delete_marked_at: videoDeleted ? now : null, video_deleted_at: videoDeleted ? now : null,
        })
        .execute();
      return id;
    }
    async function uploadRecord(key: string, state: 'uploaded' | 'expired'): Promise<void> {
      const now = new Date().toISOString();
      await server.db
        .insertInto('uploads')
        .values({
          s3_key: key, user_id: user, content_type: 'image/png', max_bytes: 1 << 20, content_length: null, file_name: null,
          state, size: PNG.length, sha256: null, etag: null, sniffed_type: null, reason: null,
          media_width: null, media_height: null, media_duration_seconds: null, media_video_codec: null, media_audio_codec: null,
          multipart_upload_id: null, created_at: now, expires_at: now, uploaded_at: state === 'uploaded' ? now : null, verified_at: null,
          ...(state === 'expired' ? { expired_at: now } : {}),
        })
        .execute();
    }
    const put = (key: string, bytes: Buffer) => server.store.put(key, Readable.from([bytes]), key.endsWith('.mp4') ? 'video/mp4' : 'image/png');

    it('tells orphans from accounted objects by their role, and finds records without their object', async () => {
      // Accounted for: a verified upload, a completed generation's video, a running generation's run objects.
      const verified = await presignAndPut(server, apiKey, 'image/png', PNG);
      expect((await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(verified.s3_key)}`, { key: apiKey })).body.state).toBe('verified');
      const completed = await generation('completed', generationVideoKey(user, 'GEN'));
      await put(generationVideoKey(user, completed), MP4);
      const running = await generation('generating', null);
      await put(generationStagingKey(user, running, 'run1'), MP4);

      // Orphans: an upload key without a record, a video of a generation whose video was deleted, a failed run's leftover
      // copy, and a key Keyframe never writes.
      const noRecord = newUploadKey(user, 'png').key;
      await put(noRecord, PNG);
      const deletedVideo = await generation('completed', generationVideoKey(user, 'GEN'), true);
      await put(generationVideoKey(user, deletedVideo), MP4);
      const failed = await generation('failed', null);
      const leftover = generationReferenceCopyKey(user, failed, 'run2', 0, 'png');
      await put(leftover, PNG);
      const stranger = `users/${user}/elsewhere/thing.png`;
      await put(stranger, PNG);
      const completedLeftover = generationStagingKey(user, completed, 'run0');
      await put(completedLeftover, MP4);
      // An object whose record says there is none (an expired upload: a PUT that landed after the record expired).
      const expired = newUploadKey(user, 'png').key;
      await uploadRecord(expired, 'expired');
      await put(expired, PNG);

      // Records without their object: a verified upload whose object went, a completed video that went.
      const lost = await presignAndPut(server, apiKey, 'image/png', PNG);
      await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(lost.s3_key)}`, { key: apiKey });
      await server.store.delete(lost.s3_key);
      const lostVideo = await generation('completed', generationVideoKey(user, 'GEN'));

      const report = await findDrift(server.db, server.store, { now: LATER(), minOrphanAgeSeconds: FLOOR });
      const why = Object.fromEntries(report.orphans.map((o) => [o.key, o.why]));
      expect(why).toEqual({
        [noRecord]: 'no record',
        [generationVideoKey(user, deletedVideo)]: 'video deleted',
        [leftover]: "leftover of a failed generation's run",
        [stranger]: 'no record (a key Keyframe never writes)',
        [completedLeftover]: "leftover of a completed generation's run",
        [expired]: 'record expired',
      });
      expect(report.youngOrphans.objects).toBe(0);
      expect(report.missing.map((m) => [m.record, m.id]).sort()).toEqual(
        [['upload', lost.s3_key], ['video', lostVideo]].sort(),
      );

      // Measured from now instead, every orphan is younger than the floor: counted, never listed.
      const now = await findDrift(server.db, server.store, { now: new Date(), minOrphanAgeSeconds: FLOOR });
      expect(now.orphans).toEqual([]);
      expect(now.youngOrphans.objects).toBe(6);

      // A record written for an orphan after the report (an upload's row, here) saves it from the repair.
      await uploadRecord(noRecord, 'uploaded');
      const repaired = await repairDrift(server.db, server.store, report, new Date());
      expect(repaired.orphansDeleted.objects).toBe(5);
      expect(repaired.recordsMarked).toBe(2);
      expect(await server.store.head(noRecord)).not.toBeNull();
      for (const key of [generationVideoKey(user, deletedVideo), leftover, stranger, completedLeftover, expired]) expect(await server.store.head(key)).toBeNull();
      // What records account for is all still there.
      for (const key of [verified.s3_key, generationVideoKey(user, completed), generationStagingKey(user, running, 'run1')]) {
        expect(await server.store.head(key)).not.toBeNull();
      }
      expect((await server.db.selectFrom('uploads').select(['state', 'deleted_reason']).where('s3_key', '=', lost.s3_key).executeTakeFirstOrThrow())).toEqual({
        state: 'deleted',
        deleted_reason: 'missing',
      });
      const video = await server.db.selectFrom('generations').select(['video_deleted_at']).where('id', '=', lostVideo).executeTakeFirstOrThrow();
      expect(video.video_deleted_at).not.toBeNull();
      // A second repair of the same report changes nothing more.
      expect(await repairDrift(server.db, server.store, report, new Date())).toEqual({ orphansDeleted: { objects: 0, bytes: 0 }, recordsMarked: 0 });
      const again = await findDrift(server.db, server.store, { now: LATER(), minOrphanAgeSeconds: FLOOR });
      expect(again.missingTotal).toBe(0);
      expect(again.orphans).toEqual([]);
    }, 60_000);
  });
});

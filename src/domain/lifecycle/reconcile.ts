import type { Db } from '../../db/database.js';
import type { ObjectStore } from '../../storage/object-store.js';
import { KEY_ROOT, keyRole, type KeyRole } from '../object-keys.js';

/**
 * Reconciliation of the store and the records (`keyframe gc`, issue 15): objects no record
 * accounts for (orphans: a crash between the store and the database, a run's leftovers), and
 * live records whose object is gone. Records are written before any object they name (a presign
 * inserts the row, then hands out the URL), so an object without a record never gets one later;
 * the one exception, a rendered video stored just before its generation is settled, is covered
 * by the age floor: an orphan younger than the upload URL lifetime is left alone (it may be an
 * upload or a render in flight).
 */

/** Upload states whose record accounts for an object in the store (or one on its way). */
const UPLOAD_STATES_WITH_OBJECT: ReadonlySet<string> = new Set(['pending', 'uploaded', 'verified', 'deleting']);
/** Upload states that promise the object exists: a record in one of these without its object has drifted. */
const LIVE_UPLOAD_STATES = ['uploaded', 'verified'] as const;

/** Items listed in a report, at most; the totals count every one. */
const MAX_LISTED = 1000;
/** Keys looked up in the database per query. */
const LOOKUP_BATCH = 500;
/** HEAD requests in flight while records are checked. */
const HEAD_CONCURRENCY = 8;

export interface OrphanObject {
  key: string;
  size: number;
  ageSeconds: number;
  /** What the key is by its layout (src/domain/object-keys.ts). */
  role: KeyRole['role'];
  /** Why no record accounts for it: `no record`, or the record's state that has no object. */
  why: string;
}

export interface MissingObject {
  /** An upload's record (by its key) or a generation's video (by the generation id). */
  record: 'upload' | 'video';
  id: string;
  key: string;
  state: string;
  ageSeconds: number;
}

export interface DriftReport {
  /** Objects listed under the store's `users/` prefix. */
  scanned: { objects: number; bytes: number };
  /** Orphans old enough to remove (the first MAX_LISTED of them). */
  orphans: OrphanObject[];
  orphanTotals: { objects: number; bytes: number };
  /** Orphans younger than the age floor: left alone, counted. */
  youngOrphans: { objects: number; bytes: number };
  /** Live records whose object is gone (the first MAX_LISTED of them). */
  missing: MissingObject[];
  missingTotal: number;
}

export interface DriftOptions {
  /** The moment the ages are measured from. */
  now: Date;
  /** Orphans younger than this (the upload URL lifetime) are left alone. */
  minOrphanAgeSeconds: number;
}

/** What is out of step between the store and the records; changes nothing. */
export async function findDrift(db: Db, store: ObjectStore, options: DriftOptions): Promise<DriftReport> {
  const report: DriftReport = {
    scanned: { objects: 0, bytes: 0 },
    orphans: [],
    orphanTotals: { objects: 0, bytes: 0 },
    youngOrphans: { objects: 0, bytes: 0 },
    missing: [],
    missingTotal: 0,
  };
  let page: { key: string; size: number; lastModified: Date }[] = [];
  const judgePage = async () => {
    for (const orphan of await orphansAmong(db, page, options.now)) {
      if (orphan.ageSeconds < options.minOrphanAgeSeconds) {
        report.youngOrphans.objects += 1;
        report.youngOrphans.bytes += orphan.size;
        continue;
      }
      report.orphanTotals.objects += 1;
      report.orphanTotals.bytes += orphan.size;
      if (report.orphans.length < MAX_LISTED) report.orphans.push(orphan);
    }
    page = [];
  };
  for await (const object of store.list(KEY_ROOT)) {
    report.scanned.objects += 1;
    report.scanned.bytes += object.size;
    page.push(object);
    if (page.length >= LOOKUP_BATCH) await judgePage();
  }
  await judgePage();

  for await (const missing of recordsWithoutObject(db, store, options.now)) {
    report.missingTotal += 1;
    if (report.missing.length < MAX_LISTED) report.missing.push(missing);
  }
  return report;
}

export interface RepairResult {
  orphansDeleted: { objects: number; bytes: number };
  recordsMarked: number;
}

/**
 * Removes the report's orphans and marks its drifted records `deleted` (reason `missing`).
 * Each orphan is judged again right before its delete, and each record is updated only while
 * it is still in the state the report saw, so a report older than the repair cannot remove
 * anything a record accounts for by then. Reports list at most MAX_LISTED items of each kind:
 * a larger drift takes several runs, each bounded.
 */
export async function repairDrift(db: Db, store: ObjectStore, report: DriftReport, now: Date): Promise<RepairResult> {
  const result: RepairResult = { orphansDeleted: { objects: 0, bytes: 0 }, recordsMarked: 0 };
  for (let i = 0; i < report.orphans.length; i += LOOKUP_BATCH) {
    const batch = report.orphans.slice(i, i + LOOKUP_BATCH);
    const still = new Set((await orphansAmong(db, batch.map((o) => ({ key: o.key, size: o.size, lastModified: now })), now)).map((o) => o.key));
    for (const orphan of batch) {
      if (!still.has(orphan.key) || (await store.head(orphan.key)) === null) continue;
      await store.delete(orphan.key);
      result.orphansDeleted.objects += 1;
      result.orphansDeleted.bytes += orphan.size;
    }
  }
  const at = now.toISOString();
  for (const missing of report.missing) {
    // Only while the object is still absent: a HEAD again, then a conditional update.
    if (await store.head(missing.key)) continue;
    const updated =
      missing.record === 'upload'
        ? await db
            .updateTable('uploads')
            .set({ state: 'deleted', deleted_at: at, deleted_reason: 'missing' })
            .where('s3_key', '=', missing.id)
            .where('state', '=', missing.state as (typeof LIVE_UPLOAD_STATES)[number])
            .executeTakeFirst()
        : await db
            .updateTable('generations')
            .set({ video_delete_marked_at: at, video_deleted_at: at })
            .where('id', '=', missing.id)
            .where('video_key', '=', missing.key)
            .where('video_deleted_at', 'is', null)
            .executeTakeFirst();
    result.recordsMarked += Number(updated.numUpdatedRows);
  }
  return result;
}

/** The objects of `page` that no record accounts for, with why. */
async function orphansAmong(db: Db, page: { key: string; size: number; lastModified: Date }[], now: Date): Promise<OrphanObject[]> {
  if (page.length === 0) return [];
  const roles = page.map((object) => ({ object, role: keyRole(object.key) }));
  const uploadKeys = roles.filter((r) => r.role.role === 'upload').map((r) => r.object.key);
  const generationIds = [...new Set(roles.flatMap((r) => ('generationId' in r.role ? [r.role.generationId] : [])))];
  const uploads = new Map(
    uploadKeys.length === 0
      ? []
      : (await db.selectFrom('uploads').select(['s3_key', 'state']).where('s3_key', 'in', uploadKeys).execute()).map((u) => [u.s3_key, u.state] as const),
  );
  const generations = new Map(
    generationIds.length === 0
      ? []
      : (
          await db
            .selectFrom('generations')
            .select(['id', 'status', 'video_key', 'video_deleted_at'])
            .where('id', 'in', generationIds)
            .execute()
        ).map((g) => [g.id, g] as const),
  );
  const orphans: OrphanObject[] = [];
  for (const { object, role } of roles) {
    const why = unaccountedFor(object.key, role, uploads, generations);
    if (why === null) continue;
    const ageSeconds = Math.max(0, Math.floor((now.getTime() - object.lastModified.getTime()) / 1000));
    orphans.push({ key: object.key, size: object.size, ageSeconds, role: role.role, why });
  }
  return orphans;
}

type GenerationFacts = { status: string; video_key: string | null; video_deleted_at: string | null };

/** Null when a record accounts for the object; otherwise why none does. */
function unaccountedFor(key: string, role: KeyRole, uploads: Map<string, string>, generations: Map<string, GenerationFacts>): string | null {
  switch (role.role) {
    case 'upload': {
      const state = uploads.get(key);
      if (state === undefined) return 'no record';
      return UPLOAD_STATES_WITH_OBJECT.has(state) ? null : `record ${state}`;
    }
    case 'video': {
      const generation = generations.get(role.generationId);
      if (!generation) return 'no record';
      if (generation.video_key !== key) return `generation ${generation.status} without this video`;
      return generation.video_deleted_at === null ? null : 'video deleted';
    }
    case 'run': {
      // A run's private copies and staging output live only while its generation runs.
      const generation = generations.get(role.generationId);
      if (!generation) return 'no record';
      return generation.status === 'generating' ? null : `leftover of a ${generation.status} generation's run`;
    }
    case 'unknown':
      return 'no record (a key Keyframe never writes)';
  }
}

/** Live upload records and settled videos whose object the store no longer has. */
async function* recordsWithoutObject(db: Db, store: ObjectStore, now: Date): AsyncGenerator<MissingObject> {
  const age = (since: string | null) => (since === null ? 0 : Math.max(0, Math.floor((now.getTime() - Date.parse(since)) / 1000)));
  let after = '';
  for (;;) {
    const rows = await db
      .selectFrom('uploads')
      .select(['s3_key', 'state', 'uploaded_at', 'created_at'])
      .where('state', 'in', LIVE_UPLOAD_STATES)
      .where('s3_key', '>', after)
      .orderBy('s3_key')
      .limit(LOOKUP_BATCH)
      .execute();
    if (rows.length === 0) break;
    after = rows[rows.length - 1]!.s3_key;
    const absent = await withoutObject(store, rows.map((r) => r.s3_key));
    for (const row of rows) {
      if (absent.has(row.s3_key)) yield { record: 'upload', id: row.s3_key, key: row.s3_key, state: row.state, ageSeconds: age(row.uploaded_at ?? row.created_at) };
    }
  }
  after = '';
  for (;;) {
    const rows = await db
      .selectFrom('generations')
      .select(['id', 'video_key', 'completed_at'])
      .where('status', '=', 'completed')
      .where('video_key', 'is not', null)
      .where('video_delete_marked_at', 'is', null)
      .where('id', '>', after)
      .orderBy('id')
      .limit(LOOKUP_BATCH)
      .execute();
    if (rows.length === 0) break;
    after = rows[rows.length - 1]!.id;
    const absent = await withoutObject(store, rows.map((r) => r.video_key!));
    for (const row of rows) {
      if (absent.has(row.video_key!)) yield { record: 'video', id: row.id, key: row.video_key!, state: 'completed', ageSeconds: age(row.completed_at) };
    }
  }
}

/** The keys among `keys` the store has no object for, HEADing a few at a time. */
async function withoutObject(store: ObjectStore, keys: string[]): Promise<Set<string>> {
  const absent = new Set<string>();
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      if ((await store.head(key)) === null) absent.add(key);
    }
  };
  await Promise.all(Array.from({ length: Math.min(HEAD_CONCURRENCY, keys.length) }, worker));
  return absent;
}

/**
 * One cleanup run in a process of its own, for test/domain/lifecycle/cleanup-crash.test.ts:
 * the config is KEYFRAME_CHILD_ENV (JSON: the test server's environment, so the same database
 * and store), the clock stands at KEYFRAME_CHILD_NOW, and the run stops for good at the seam
 * KEYFRAME_CHILD_STOP_AT (`mark`: the record marked, the object still there; `delete`: the
 * object deleted, the record not yet finalised), printing `stopped <key>`. The test SIGKILLs it.
 */
import { loadConfig } from '../../../../src/config.js';
import { databaseTargetOf, openDatabase } from '../../../../src/db/database.js';
import { UploadCleanup } from '../../../../src/domain/lifecycle/cleanup.js';
import { retentionPolicyOf } from '../../../../src/domain/lifecycle/policy.js';
import { openStore } from '../../../../src/storage/open-store.js';

const config = loadConfig(JSON.parse(process.env.KEYFRAME_CHILD_ENV!) as Record<string, string>);
const now = new Date(process.env.KEYFRAME_CHILD_NOW!);
const stopAt = process.env.KEYFRAME_CHILD_STOP_AT as 'mark' | 'delete';
const db = await openDatabase(databaseTargetOf(config), { migrate: false });
const store = await openStore(config, 'http://127.0.0.1:9', { bootstrap: false });
const stop = async (key: string) => {
  process.stdout.write(`stopped ${key}\n`);
  await new Promise(() => {});
};
const cleanup = new UploadCleanup(db, store, {
  policy: retentionPolicyOf(config),
  clock: { now: () => now },
  holder: 'crashing-child',
  seams: stopAt === 'mark' ? { afterMark: stop } : { afterDelete: stop },
});
await cleanup.runOnce();
process.stdout.write('finished without stopping\n');
process.exit(1);

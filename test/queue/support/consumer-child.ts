/**
 * A consumer in a process of its own, for test/queue/two-workers.test.ts: it
 * opens the database named by KEYFRAME_CHILD_TARGET (JSON: a DatabaseTarget),
 * starts an InProcessQueue whose handler appends each job id it starts to
 * KEYFRAME_CHILD_STARTS (one line each, written before the job "runs") and then
 * never finishes, and prints `ready <workerId>` once started. The test
 * SIGKILLs it: a consumer that dies holding jobs, with no chance to hand them back.
 */
import { appendFileSync } from 'node:fs';
import { openDatabase, type DatabaseTarget } from '../../../src/db/database.js';
import { InProcessQueue } from '../../../src/queue/in-process-queue.js';

const target = JSON.parse(process.env.KEYFRAME_CHILD_TARGET!) as DatabaseTarget;
const starts = process.env.KEYFRAME_CHILD_STARTS!;
const db = await openDatabase(target, { migrate: false });
const queue = new InProcessQueue(db, {
  concurrency: Number(process.env.KEYFRAME_CHILD_CONCURRENCY ?? 1),
  maxAttempts: 2,
  leaseMs: Number(process.env.KEYFRAME_CHILD_LEASE_MS ?? 1000),
  pollMs: 50,
  onError: (err, id) => process.stderr.write(`child error (${id}): ${String(err)}\n`),
});
await queue.start({
  run: (id, signal) => {
    appendFileSync(starts, `${id}\n`);
    return new Promise<void>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
  },
  abandon: async (id, reason) => {
    await db.updateTable('generations').set({ status: 'failed', error: reason }).where('id', '=', id).execute();
  },
});
process.stdout.write(`ready ${queue.workerId}\n`);

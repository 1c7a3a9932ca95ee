/**
 * A webhook dispatcher in a process of its own, for
 * test/webhooks/webhook-durability.test.ts: it opens the database named by
 * KEYFRAME_CHILD_TARGET (JSON: a DatabaseTarget), starts a dispatcher with a
 * claim of KEYFRAME_CHILD_LEASE_MS and prints `ready <workerId>`. The test
 * SIGKILLs it while its receiver holds the attempt: a dispatcher that dies
 * holding a delivery, with no chance to hand it back.
 */
import { openDatabase, type DatabaseTarget } from '../../../src/db/database.js';
import { testDispatcher } from './deliveries.js';

const target = JSON.parse(process.env.KEYFRAME_CHILD_TARGET!) as DatabaseTarget;
const leaseMs = Number(process.env.KEYFRAME_CHILD_LEASE_MS);
const db = await openDatabase(target, { migrate: false });
const { dispatcher } = testDispatcher(db, process.env.KEYFRAME_CHILD_DIR!, { leaseMs, attemptTimeoutMs: leaseMs - 100 });
dispatcher.start();
process.stdout.write(`ready ${dispatcher.workerId}\n`);

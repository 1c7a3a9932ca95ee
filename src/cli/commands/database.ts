import type { Config } from '../../config.js';
import { databaseTargetOf, openDatabase } from '../../db/database.js';
import { ApiKeys } from '../../domain/api-keys.js';
import { DISK_RESERVATION_GRACE_MS } from '../../domain/usage/upload-usage.js';
import { readUserUsage, type UserUsageReport } from '../../domain/usage/user-usage.js';

/**
 * The admin commands' access to the configured database, opened for one command
 * and closed after it; never migrated (that is `keyframe migrate`). Imported by
 * the commands when they run, so that other commands do not load the drivers.
 */
export async function withKeys(config: Config, run: (keys: ApiKeys) => Promise<number>): Promise<number> {
  const db = await openDatabase(databaseTargetOf(config), { migrate: false });
  try {
    return await run(new ApiKeys(db));
  } finally {
    await db.destroy();
  }
}

/** A user's usage against the configured limits; null for an unknown user. */
export async function usageOf(config: Config, userId: string): Promise<UserUsageReport | null> {
  const db = await openDatabase(databaseTargetOf(config), { migrate: false });
  try {
    return await readUserUsage(db, userId, config.limits, config.storage === 'disk' ? DISK_RESERVATION_GRACE_MS : Infinity);
  } finally {
    await db.destroy();
  }
}

import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { openDatabase } from '../src/db/database.js';
import { ApiKeys } from '../src/domain/api-keys.js';
import { dataDirWithKey } from './lib/keys.js';
import { summarise } from './lib/stats.js';

export interface AuthTimingResult {
  iterations: number;
  /** Median and 90th percentile of one `authenticate` call, in microseconds, per class of key. */
  classes: Record<string, { medianUs: number; p90Us: number }>;
  /** Median of (right length, shares 40 of 43 secret characters) minus (right length, random). */
  sharedPrefixMinusRandomUs: number;
  wrongLengthMinusRightLengthUs: number;
}

/**
 * Timing of key checks, in-process (no network noise to hide behind): wrong keys
 * of the right length, wrong keys sharing all but the last 3 characters with a
 * live key, and keys of the wrong length; classes interleaved at random.
 */
export async function benchAuthTiming(iterations: number): Promise<AuthTimingResult> {
  const { dataDir, key } = await dataDirWithKey('timing');
  const db = await openDatabase(dataDir);
  try {
    const apiKeys = new ApiKeys(db);
    for (let i = 0; i < 1000; i++) await apiKeys.createKey({ userId: `timing-${i % 10}` });
    const secretChars = () => randomBytes(32).toString('base64url');
    const classes: Record<string, () => string> = {
      'right length, random': () => `prism_sk_${secretChars()}`,
      'right length, shares 40 of 43 secret chars with a live key': () => key.slice(0, -3) + secretChars().slice(0, 3),
      'wrong length (20 chars)': () => `prism_sk_${secretChars().slice(0, 20)}`,
      'live key (reference)': () => key,
    };
    const names = Object.keys(classes);
    const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
    for (let i = 0; i < iterations * names.length; i++) {
      const name = names[Math.floor(Math.random() * names.length)]!;
      const header = `Bearer ${classes[name]!()}`;
      const start = process.hrtime.bigint();
      try {
        await apiKeys.authenticate(header);
      } catch {
        // wrong keys throw the one 401: that is the path being timed
      }
      samples[name]!.push(Number(process.hrtime.bigint() - start) / 1000);
    }
    const result: AuthTimingResult['classes'] = {};
    for (const name of names) {
      const sorted = [...samples[name]!].sort((a, b) => a - b);
      result[name] = { medianUs: summarise(sorted).median, p90Us: sorted[Math.floor(sorted.length * 0.9)]! };
    }
    return {
      iterations,
      classes: result,
      sharedPrefixMinusRandomUs: result[names[1]!]!.medianUs - result[names[0]!]!.medianUs,
      wrongLengthMinusRightLengthUs: result[names[2]!]!.medianUs - result[names[0]!]!.medianUs,
    };
  } finally {
    await db.destroy();
    await rm(dataDir, { recursive: true, force: true });
  }
}

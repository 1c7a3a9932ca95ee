import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Config } from './config.js';

/**
 * The secret this node signs with: `KEYFRAME_SIGNING_SECRET`, or else one kept
 * in the data dir (`signing-secret`, 0600), made on first use, so that what it
 * signed stays valid across restarts. Two users: the disk store's URLs, and the
 * `http` runner's callback secrets (a subkey of it, src/runners/http/callback-secret.ts).
 *
 * Processes sharing a data dir may start at once, so the file is written under
 * a temporary name and linked into place: a reader never sees it half written,
 * and the process that loses the race reads the winner's secret.
 */
export function signingSecret(config: Pick<Config, 'signingSecret' | 'dataDir'>): string {
  if (config.signingSecret) return config.signingSecret;
  const file = path.join(config.dataDir, 'signing-secret');
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(temporary, randomBytes(32).toString('base64url'), { mode: 0o600, flag: 'wx' });
  try {
    fs.linkSync(temporary, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    fs.rmSync(temporary, { force: true });
  }
  return fs.readFileSync(file, 'utf8').trim();
}

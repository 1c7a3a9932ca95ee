import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config.js';
import { DiskStore } from './disk/disk-store.js';
import type { ObjectStore } from './object-store.js';

/** The object store the config names, ready to use. */
export async function openStore(config: Config, publicUrl: string): Promise<ObjectStore> {
  const store = new DiskStore({ root: config.dataDir, publicUrl, signingSecret: signingSecret(config) });
  await store.init();
  return store;
}

/** The configured secret, or one kept in the data dir so URLs stay valid across restarts. */
function signingSecret(config: Config): string {
  if (config.signingSecret) return config.signingSecret;
  const file = path.join(config.dataDir, 'signing-secret');
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    const secret = randomBytes(32).toString('base64url');
    fs.writeFileSync(file, secret, { mode: 0o600, flag: 'wx' });
    return secret;
  }
}

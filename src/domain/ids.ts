import { randomBytes } from 'node:crypto';

const ID_BYTES = 16;
/**
 * Random bytes are drawn from the CSPRNG 4 KiB at a time: one randomBytes call
 * costs about as much for 16 bytes as for 4 KiB, and ids are made on every presign.
 * Each id takes the next unused 16 bytes of the pool; none is handed out twice.
 */
const POOL_BYTES = 4096;
let pool = randomBytes(POOL_BYTES);
let offset = 0;

/** An unguessable id: a prefix and 128 random bits in base64url (22 characters). */
export function randomId(prefix: string): string {
  if (offset + ID_BYTES > POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  const id = pool.toString('base64url', offset, offset + ID_BYTES);
  offset += ID_BYTES;
  return `${prefix}_${id}`;
}

/** Pattern matching ids made by `randomId(prefix)`. */
export const idPattern = (prefix: string) => `${prefix}_[A-Za-z0-9_-]{22}`;

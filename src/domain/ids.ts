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
  return `${prefix}_${random128()}`;
}

/**
 * `randomId` with the creation time in front (milliseconds, 12 hex digits): ids
 * made later sort later. A row keyed by such an id lands at the end of its
 * index instead of on a random page of it; with purely random keys every
 * insert dirtied another B-tree page, which was a third of a presign's cost.
 * The 128 random bits are the same as `randomId`'s; the time is not a secret.
 */
export function timeOrderedId(prefix: string): string {
  return `${prefix}_${Date.now().toString(16).padStart(12, '0')}${random128()}`;
}

/** 128 random bits in base64url (22 characters), the next unused ones of the pool. */
function random128(): string {
  if (offset + ID_BYTES > POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  const id = pool.toString('base64url', offset, offset + ID_BYTES);
  offset += ID_BYTES;
  return id;
}

/** Pattern matching ids made by `randomId(prefix)`. */
export const idPattern = (prefix: string) => `${prefix}_[A-Za-z0-9_-]{22}`;

/** Pattern matching ids made by `timeOrderedId(prefix)`, and by `randomId(prefix)` before ids carried the time. */
export const timeOrderedIdPattern = (prefix: string) => `${prefix}_(?:[0-9a-f]{12})?[A-Za-z0-9_-]{22}`;

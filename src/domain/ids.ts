import { randomBytes } from 'node:crypto';

/** An unguessable id: a prefix and 128 random bits in base64url (22 characters). */
export function randomId(prefix: string): string {
  return `${prefix}_${randomBytes(16).toString('base64url')}`;
}

/** Pattern matching ids made by `randomId(prefix)`. */
export const idPattern = (prefix: string) => `${prefix}_[A-Za-z0-9_-]{22}`;

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { CompiledQuery } from 'kysely';
import { announceKeyChange } from '../db/change-feed.js';
import type { Db } from '../db/database.js';
import { randomId } from './ids.js';
import { USER_ID_PATTERN } from './object-keys.js';
import { ApiError, INVALID_API_KEY } from './errors.js';
import { LiveKeyCache } from './live-key-cache.js';
import type { Principal } from './principal.js';

/** The scope Prism documents; it grants uploads, generations and their status. */
export const DEFAULT_SCOPE = 'templates:read';
export const SCOPE_PATTERN = /^[a-z]+:[a-z]+$/;

const KEY_PREFIX = 'prism_sk_';
/** `prism_sk_` + 32 random bytes in base64url. */
const KEY_PATTERN = /^prism_sk_[A-Za-z0-9_-]{43}$/;
const DISPLAY_PREFIX_LENGTH = KEY_PREFIX.length + 6;

export interface ApiKeyInfo {
  id: string;
  user_id: string;
  display_prefix: string;
  scopes: string[];
  name: string | null;
  created_at: string;
  revoked_at: string | null;
}

export interface CreatedApiKey extends ApiKeyInfo {
  /** The key itself: shown once, never stored. */
  key: string;
}

/**
 * Keys are 256-bit random secrets, so one SHA-256 is the right hash: no salt or
 * slow KDF is needed against guessing, and lookup by hash is a single index probe.
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export class ApiKeys {
  /** The lookup of a key not in the cache, compiled once: only its one parameter, the hash, changes. */
  private readonly lookupByHash;
  private readonly liveKeys: LiveKeyCache;

  constructor(private readonly db: Db) {
    this.liveKeys = LiveKeyCache.of(db);
    this.lookupByHash = db
      .selectFrom('api_keys')
      .select(['id', 'user_id', 'key_hash', 'scopes', 'revoked_at'])
      .where('key_hash', '=', '')
      .compile();
    if (this.lookupByHash.parameters.length !== 1) throw new Error('key lookup must have exactly one parameter');
  }

  /** Authenticates an `Authorization` header value; throws 401 for anything but a live key. */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    const match = /^Bearer +(\S+)$/i.exec(authorization?.trim() ?? '');
    const key = match?.[1];
    if (!key || !KEY_PATTERN.test(key)) throw new ApiError('unauthorized', INVALID_API_KEY);
    const hash = hashApiKey(key);
    const lookup = this.liveKeys.beginLookup();
    const cached = this.liveKeys.get(hash);
    if (cached) return cached;
    const { rows } = await this.db.executeQuery(withParameters(this.lookupByHash, [hash]));
    const row = rows[0];
    // The lookup is by hash, which an attacker cannot steer; the compare is constant-time anyway.
    const stored = Buffer.from(row?.key_hash ?? '0'.repeat(64), 'hex');
    const matches = timingSafeEqual(stored, Buffer.from(hash, 'hex'));
    if (!row || !matches || row.revoked_at !== null) throw new ApiError('unauthorized', INVALID_API_KEY);
    const principal: Principal = Object.freeze({
      keyId: row.id,
      userId: row.user_id,
      scopes: Object.freeze(JSON.parse(row.scopes) as string[]),
    });
    this.liveKeys.remember(lookup, hash, principal);
    return principal;
  }

  async createUser(userId: string): Promise<{ id: string; created: boolean }> {
    if (!USER_ID_PATTERN.test(userId)) {
      throw new ApiError('validation_error', 'user id must be 1-64 characters of A-Z, a-z, 0-9, _ and -');
    }
    const result = await this.db
      .insertInto('users')
      .values({ id: userId, webhook_secret: `whsec_${randomBytes(24).toString('base64url')}`, created_at: now() })
      .onConflict((oc) => oc.column('id').doNothing())
      .executeTakeFirst();
    return { id: userId, created: Number(result.numInsertedOrUpdatedRows ?? 0) > 0 };
  }

  async listUsers(): Promise<{ id: string; created_at: string; webhook_secret: string }[]> {
    return this.db.selectFrom('users').select(['id', 'created_at', 'webhook_secret']).orderBy('id').execute();
  }

  /** Creates a key (and its user when missing); the returned `key` is the only copy. */
  async createKey(input: { userId: string; scopes?: string[]; name?: string | null }): Promise<CreatedApiKey> {
    const scopes = [...new Set(input.scopes && input.scopes.length > 0 ? input.scopes : [DEFAULT_SCOPE])];
    const bad = scopes.find((s) => !SCOPE_PATTERN.test(s));
    if (bad !== undefined) throw new ApiError('validation_error', `invalid scope "${bad}" (expected e.g. ${DEFAULT_SCOPE})`);
    const name = input.name ?? null;
    if (name !== null && name.length > 200) throw new ApiError('validation_error', 'name must be at most 200 characters');
    await this.createUser(input.userId);
    const key = KEY_PREFIX + randomBytes(32).toString('base64url');
    const row = {
      id: randomId('key'),
      user_id: input.userId,
      key_hash: hashApiKey(key),
      display_prefix: key.slice(0, DISPLAY_PREFIX_LENGTH),
      scopes: JSON.stringify(scopes),
      name,
      created_at: now(),
      revoked_at: null,
    };
    await this.db.insertInto('api_keys').values(row).execute();
    return { ...toInfo(row), key };
  }

  async listKeys(userId?: string): Promise<ApiKeyInfo[]> {
    let query = this.db
      .selectFrom('api_keys')
      .select(['id', 'user_id', 'display_prefix', 'scopes', 'name', 'created_at', 'revoked_at'])
      .orderBy('created_at')
      .orderBy('id');
    if (userId !== undefined) query = query.where('user_id', '=', userId);
    return (await query.execute()).map(toInfo);
  }

  /**
   * Revokes a key; false when there is no such key. Revoking twice keeps the first time.
   * Every other process on the database hears of it when the transaction commits
   * (announceKeyChange); this process's cache is emptied before this returns.
   */
  async revokeKey(keyId: string): Promise<boolean> {
    const revoked = await this.db.transaction().execute(async (trx) => {
      const exists = await trx.selectFrom('api_keys').select('id').where('id', '=', keyId).executeTakeFirst();
      if (!exists) return false;
      await trx.updateTable('api_keys').set({ revoked_at: now() }).where('id', '=', keyId).where('revoked_at', 'is', null).execute();
      await announceKeyChange(trx);
      return true;
    });
    if (revoked) this.liveKeys.clear();
    return revoked;
  }
}

/** The same compiled query with other values for its parameters. */
function withParameters<Row>(query: CompiledQuery<Row>, parameters: readonly unknown[]): CompiledQuery<Row> {
  return { ...query, parameters };
}

function toInfo(row: Omit<ApiKeyInfo, 'scopes'> & { scopes: string }): ApiKeyInfo {
  return {
    id: row.id,
    user_id: row.user_id,
    display_prefix: row.display_prefix,
    scopes: JSON.parse(row.scopes) as string[],
    name: row.name,
    created_at: row.created_at,
    revoked_at: row.revoked_at,
  };
}

const now = () => new Date().toISOString();

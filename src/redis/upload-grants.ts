import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { GrantCheck, GrantOutcome, SharedGrants } from '../domain/usage/shared-grants.js';
import type { RedisHandle } from './connection.js';

/**
 * The client the presign limits count through (the rate limit's counters and the upload grants),
 * with the prefix of the installation's keys.
 */
export interface LimitsRedis {
  client: Redis;
  prefix: string;
}

/**
 * How long a presign waits on Redis before it fails: as long as /readyz waits on a dependency
 * (READINESS_TIMEOUT_MS), past which that dependency is as good as down.
 */
const COMMAND_TIMEOUT_MS = 2000;

/**
 * A connection of the limits' own, duplicated from the process's client with other settings: that
 * client waits for a reconnection with every command (BullMQ requires it), so a presign counting
 * through it would hang for as long as Redis is away. This one fails a command at once when the
 * connection is down and after COMMAND_TIMEOUT_MS when Redis does not answer, and never resends a
 * command after a reconnection (a grant or a count arriving after its presign has answered would
 * only over-count). It is closed when the process's client is (the foundation's close), on every path.
 */
export async function openLimitsRedis(handle: RedisHandle, onError: (err: Error) => void): Promise<LimitsRedis> {
  const client = handle.client.duplicate({
    lazyConnect: true,
    connectionName: 'keyframe-limits',
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: COMMAND_TIMEOUT_MS,
  });
  client.on('error', onError);
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    throw err;
  }
  handle.client.once('end', () => {
    client.quit().catch(() => client.disconnect());
  });
  return { client, prefix: handle.prefix };
}

/** How long an unsettled grant counts as in flight, in µs: far longer than any presign takes from its grant to its commit. */
const FLIGHT_US = 10 * 60_000_000;
/** How long a committed grant is kept, in µs: bases older than this are `stale` (nodes re-derive theirs every few seconds). */
const RETAIN_US = 60_000_000;
/** Expiry of a user's set after its last grant or clock reading, in ms: once it passes, nothing in it counts any more. */
const KEY_TTL_MS = (FLIGHT_US + RETAIN_US) / 1000;

/**
 * The user's clock, in µs: Redis's TIME, but never less than one more than its last reading
 * (kept as the member `clock`). Every reading, grant and commit of one user thus gets a distinct,
 * increasing time in the order Redis ran them, even if Redis's own clock steps back (a failover
 * to a replica, a corrected clock): a commit stamped before a base's reading ran before it.
 */
const TICK_LUA = `
local function tick(key)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('ZSCORE', key, 'clock'))
  if last and now <= last then now = last + 1 end
  redis.call('ZADD', key, now, 'clock')
  return now
end
`;

/** KEYS[1]: the user's grants; ARGV[1]: the key's expiry (ms). Returns a reading of the user's clock. */
const CLOCK_LUA = `${TICK_LUA}
local now = tick(KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return now
`;

/**
 * KEYS[1]: the user's grants, a sorted set of `<id>:<bytes>`, each scored by the time until which
 * it counts as in flight (grant time + flight) or, once committed, by its commit time; and `clock`.
 * ARGV: since, base pending, base used bytes, max pending, max bytes, member, bytes, flight µs,
 * retain µs, key expiry ms. Returns {1} granted, {0, pending, used} refused, {-1} stale base.
 */
const GRANT_LUA = `${TICK_LUA}
local now = tick(KEYS[1])
local since = tonumber(ARGV[1])
local retain = tonumber(ARGV[9])
if since < now - retain then return {-1} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - retain - 1)
local counted = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf')
local pending = tonumber(ARGV[2])
local used = tonumber(ARGV[3])
for i = 1, #counted do
  local bytes = string.match(counted[i], ':(%d+)$')
  if bytes then
    pending = pending + 1
    used = used + tonumber(bytes)
  end
end
if pending >= tonumber(ARGV[4]) or used + tonumber(ARGV[7]) > tonumber(ARGV[5]) then return {0, pending, used} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[8]), ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[10])
return {1}
`;

/** KEYS[1]: the user's grants; ARGV[1]: the member. Re-scores it with its commit time, if it is still there. */
const COMMIT_LUA = `${TICK_LUA}
redis.call('ZADD', KEYS[1], 'XX', tick(KEYS[1]), ARGV[1])
`;

interface GrantCommands {
  keyframeUploadClock(key: string, ttlMs: number): Promise<number>;
  keyframeUploadGrant(key: string, ...args: (string | number)[]): Promise<number[]>;
  keyframeUploadCommit(key: string, member: string): Promise<unknown>;
}

/**
 * The upload quota's shared grants in Redis (the port: src/domain/usage/shared-grants.ts): one
 * sorted set per user, `<prefix>:upload-grants:<userId>`, read and written by one Lua script per
 * presign, so that the check and the record are one atomic step across every node. A base counts
 * the grants committed after its clock reading: those before it ran before the reading, so before
 * the query, so their rows are in the snapshot. The set expires KEY_TTL_MS after the user's last
 * grant, and each grant prunes what is older than RETAIN_US, so nothing piles up.
 */
export class RedisUploadGrants implements SharedGrants {
  private readonly client: Redis & GrantCommands;
  /** Unique among the nodes: grant ids are this tag and a counter. */
  private readonly tag = randomBytes(6).toString('base64url');
  private counter = 0;

  constructor(
    private readonly redis: LimitsRedis,
    /** Told when a settle did not reach Redis (its grant then counts as in flight until its deadline). */
    private readonly onSettleError: (err: Error) => void,
  ) {
    redis.client.defineCommand('keyframeUploadClock', { numberOfKeys: 1, lua: CLOCK_LUA });
    redis.client.defineCommand('keyframeUploadGrant', { numberOfKeys: 1, lua: GRANT_LUA });
    redis.client.defineCommand('keyframeUploadCommit', { numberOfKeys: 1, lua: COMMIT_LUA });
    this.client = redis.client as Redis & GrantCommands;
  }

  async clock(userId: string): Promise<number> {
    try {
      return await this.client.keyframeUploadClock(this.keyOf(userId), KEY_TTL_MS);
    } catch (err) {
      throw new LimitsUnavailable(err);
    }
  }

  async tryGrant(check: GrantCheck): Promise<GrantOutcome> {
    const key = this.keyOf(check.userId);
    const member = `${this.tag}.${(++this.counter).toString(36)}:${check.bytes}`;
    let reply: number[];
    try {
      reply = await this.client.keyframeUploadGrant(
        key,
        check.since,
        check.basePending,
        check.baseUsedBytes,
        check.maxPending,
        check.maxBytes,
        member,
        check.bytes,
        FLIGHT_US,
        RETAIN_US,
        KEY_TTL_MS,
      );
    } catch (err) {
      // A timed-out script may still have run: withdraw its grant, after it on the same connection (best effort).
      this.client.zrem(key, member).catch(() => {});
      throw new LimitsUnavailable(err);
    }
    if (reply[0] === 1) return { kind: 'granted', grant: member };
    if (reply[0] === 0) return { kind: 'refused', pendingUploads: reply[1]!, usedBytes: reply[2]! };
    return { kind: 'stale' };
  }

  settle(userId: string, grant: string, committed: boolean): void {
    const key = this.keyOf(userId);
    const sent = committed ? this.client.keyframeUploadCommit(key, grant) : this.client.zrem(key, grant);
    sent.catch((err: Error) => this.onSettleError(err));
  }

  private keyOf(userId: string): string {
    return `${this.redis.prefix}:upload-grants:${userId}`;
  }
}

/**
 * Redis did not answer a presign's count: the presign fails (500 `server_error`, its message
 * hidden from the client as every unexpected error's is) and reserves nothing.
 */
export class LimitsUnavailable extends Error {
  constructor(cause: unknown) {
    super(`upload quota: Redis did not answer (${cause instanceof Error ? cause.message : String(cause)})`, { cause });
    this.name = 'LimitsUnavailable';
  }
}

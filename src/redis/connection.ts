import { Redis } from 'ioredis';
import type { RedisConfig } from '../config.js';

/**
 * The Redis of a cluster (KEYFRAME_REDIS_URL): one client per process, opened by the composition
 * root (src/start/shared.ts) and handed to whatever shares state through it (the BullMQ queue,
 * the presign rate limit, the upload quota's shared grants). BullMQ duplicates it for its
 * blocking commands.
 */
export interface RedisHandle {
  client: Redis;
  /** Prefix of every key this installation writes (`KEYFRAME_REDIS_PREFIX`). */
  prefix: string;
  /** Closes the client (and nothing BullMQ duplicated: those close with their queue). Safe to call twice. */
  close(): Promise<void>;
}

export interface OpenRedisOptions {
  /** Told of connection errors (the client reconnects by itself; without a listener ioredis would crash the process). */
  onError: (err: Error) => void;
}

/**
 * Connects and waits until Redis answers, so a wrong URL fails the start-up with a clear
 * error. `maxRetriesPerRequest: null` is what BullMQ requires of a client its workers use: a
 * command waits for the reconnection instead of failing after a few retries.
 */
export async function openRedis(config: RedisConfig, options: OpenRedisOptions): Promise<RedisHandle> {
  const client = new Redis(config.url, { maxRetriesPerRequest: null, lazyConnect: true, connectionName: 'keyframe' });
  client.on('error', options.onError);
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    client.disconnect();
    throw new RedisUnreachable(config.url, err);
  }
  let closed: Promise<void> | null = null;
  return {
    client,
    prefix: config.prefix,
    close: () =>
      (closed ??= client.quit().then(
        () => undefined,
        () => client.disconnect(),
      )),
  };
}

/** Redis did not answer at start-up; the message names the host, never the password. */
export class RedisUnreachable extends Error {
  constructor(url: string, cause: unknown) {
    super(`Redis at ${withoutPassword(url)} is unreachable: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'RedisUnreachable';
  }
}

/** The URL for messages: its password replaced by `***`. */
export function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(invalid URL)';
  }
}

import type { Command } from 'commander';
import { KeyframeClient } from '../client/node.js';
import { UsageError } from './context.js';

/** The server a client command talks to when neither --url nor KEYFRAME_URL says: the server's default PORT, on loopback. */
export const DEFAULT_URL = 'http://127.0.0.1:3000';

export interface ConnectionOptions {
  url?: string;
  apiKey?: string;
}

/** --url and --api-key, on each command that talks to a running server. */
export function withConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--url <url>', `the server (default KEYFRAME_URL, else ${DEFAULT_URL})`)
    .option('--api-key <key>', 'the API key (default KEYFRAME_API_KEY, which keeps it out of the process list)');
}

/**
 * A client for the server named by the flags, else by the environment runCli was
 * given. A missing key or a URL that is not http(s) is a usage error. The key is
 * never part of a message.
 */
export function connect(options: ConnectionOptions, env: NodeJS.ProcessEnv): KeyframeClient {
  const apiKey = options.apiKey?.trim() || env.KEYFRAME_API_KEY?.trim();
  if (!apiKey) throw new UsageError('no API key: set KEYFRAME_API_KEY (or pass --api-key)');
  const source = options.url !== undefined ? '--url' : 'KEYFRAME_URL';
  const baseUrl = options.url?.trim() || env.KEYFRAME_URL?.trim() || DEFAULT_URL;
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new UsageError(`${source} must be an http(s) URL such as ${DEFAULT_URL}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`${source} must be an http(s) URL such as ${DEFAULT_URL}`);
  return new KeyframeClient({ baseUrl, apiKey });
}

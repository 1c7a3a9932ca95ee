import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config.js';
import { ApiKeys, type CreatedApiKey } from '../../src/domain/api-keys.js';
import { startServer, type RunningServer } from '../../src/server.js';

export interface TestServer extends RunningServer {
  dataDir: string;
  apiKeys: ApiKeys;
  /** Creates a key (and its user) and returns it. */
  createKey(userId: string, scopes?: string[]): Promise<CreatedApiKey>;
  /** POST/GET JSON to the API with a Bearer key, over real HTTP. */
  api(method: string, pathname: string, options?: { key?: string; body?: unknown }): Promise<{ status: number; body: any; headers: Headers }>;
  stop(): Promise<void>;
}

/**
 * Per-user quotas lifted, for tests that make thousands of presigns as one user
 * to test something else (batching, fuzzing, races): the quotas themselves are
 * tested in test/http/quotas.test.ts and test/reliability/quotas.test.ts.
 */
export const QUOTAS_LIFTED: Record<string, string> = {
  KEYFRAME_PRESIGNS_PER_MINUTE: '1000000',
  KEYFRAME_MAX_PENDING_UPLOADS: '1000000',
  KEYFRAME_MAX_STORED_BYTES: String(2 ** 50),
};

/** A real server on a free loopback port with its own data dir; `env` overrides the config. */
export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'keyframe-test-'));
  const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', KEYFRAME_DATA_DIR: dataDir, LOG_LEVEL: 'silent', ...env });
  const server = await startServer(config);
  const apiKeys = new ApiKeys(server.db);
  return {
    ...server,
    dataDir,
    apiKeys,
    createKey: (userId, scopes) => apiKeys.createKey({ userId, scopes }),
    async api(method, pathname, options = {}) {
      const headers: Record<string, string> = {};
      if (options.key) headers.authorization = `Bearer ${options.key}`;
      if (options.body !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(server.url + pathname, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: res.status, body, headers: res.headers };
    },
    async stop() {
      await server.close();
      // A verification or render finishing during close may still be writing a scratch file under tmp/.
      await rm(dataDir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
}

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
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

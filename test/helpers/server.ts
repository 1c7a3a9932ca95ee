import { loadConfig } from '../../src/config.js';
import { ApiKeys, type CreatedApiKey } from '../../src/domain/api-keys.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { testDatabase, type TestDatabase } from './database.js';

export interface TestServer extends RunningServer {
  dataDir: string;
  /** The server's own fresh database, of the vitest project's dialect (test/helpers/database.ts). */
  database: TestDatabase;
  apiKeys: ApiKeys;
  /** Creates a key (and its user) and returns it. */
  createKey(userId: string, scopes?: string[]): Promise<CreatedApiKey>;
  /** POST/GET JSON to the API with a Bearer key, over real HTTP. */
  api(method: string, pathname: string, options?: { key?: string; body?: unknown }): Promise<ApiAnswer>;
  stop(): Promise<void>;
}

export interface ApiAnswer {
  status: number;
  /** The JSON body, or the text when it is not JSON. */
  body: any;
  headers: Headers;
}

/** POST/GET JSON to the API at `baseUrl` with a Bearer key, over real HTTP (a TestServer's `api`, or any node's). */
export async function callApi(baseUrl: string, method: string, pathname: string, options: { key?: string; body?: unknown } = {}): Promise<ApiAnswer> {
  const headers: Record<string, string> = {};
  if (options.key) headers.authorization = `Bearer ${options.key}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(baseUrl + pathname, {
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

/**
 * A real server on a free loopback port with its own data dir and its own fresh
 * database of the project's dialect (SQLite in the data dir, or a new
 * PostgreSQL database); `env` overrides the config. `stop()` removes both.
 */
export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const database = await testDatabase('test');
  const dataDir = database.dataDir;
  let server: RunningServer;
  try {
    const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent', ...database.env, ...env });
    server = await startServer(config);
  } catch (err) {
    await database.dispose();
    throw err;
  }
  const apiKeys = new ApiKeys(server.db);
  return {
    ...server,
    dataDir,
    database,
    apiKeys,
    createKey: (userId, scopes) => apiKeys.createKey({ userId, scopes }),
    api: (method, pathname, options) => callApi(server.url, method, pathname, options),
    async stop() {
      try {
        await server.close();
      } finally {
        // Removes the data dir (a verification or render finishing during close may still be writing
        // a scratch file under tmp/: removal retries) and drops the PostgreSQL database.
        await database.dispose();
      }
    },
  };
}

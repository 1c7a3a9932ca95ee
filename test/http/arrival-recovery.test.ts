import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { ApiKeys } from '../../src/domain/api-keys.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';
import { readFixture } from '../helpers/media-fixtures.js';
import { callApi } from '../helpers/server.js';

/**
 * The disk store commits an object, then its route records the arrival: a kill between the two
 * leaves the object with a `pending` record (the reliability suite's crash test meets it by
 * chance). Here that state is made on purpose, by storing the object past the route, and the
 * restarted server must record the arrival before it takes requests.
 */

let database: TestDatabase | null = null;
let server: RunningServer | null = null;

afterAll(async () => {
  await server?.close();
  await database?.dispose();
});

describe('arrivals a stop cut off (disk store)', () => {
  it('a committed object whose record is still pending is recorded `uploaded` at the next start; one without an object stays pending', async () => {
    database = await testDatabase('arrivals');
    const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent', ...database.env });
    server = await startServer(config);
    const { key } = await new ApiKeys(server.db).createKey({ userId: 'alice' });
    const presign = async () => {
      const answer = await callApi(server!.url, 'POST', '/api/s3/presign-upload', { key, body: { kind: 'upload', contentType: 'image/png' } });
      expect(answer.status).toBe(200);
      return answer.body.s3_key as string;
    };
    const arrived = await presign();
    const never = await presign();
    const png = readFixture('sample.png');
    await server.store.put(arrived, Readable.from([png]), 'image/png');
    const stateOf = async (s3Key: string) =>
      server!.db.selectFrom('uploads').select(['state', 'size', 'sha256']).where('s3_key', '=', s3Key).executeTakeFirstOrThrow();
    expect(await stateOf(arrived)).toMatchObject({ state: 'pending', size: null });

    await server.close();
    server = await startServer(config);

    const sha256 = createHash('sha256').update(png).digest('hex');
    expect(await stateOf(arrived)).toEqual({ state: 'uploaded', size: png.length, sha256 });
    expect(await stateOf(never)).toMatchObject({ state: 'pending', size: null });
    // And the status call goes on from there as for any arrival.
    const status = await callApi(server.url, 'GET', `/api/uploads/status?key=${encodeURIComponent(arrived)}`, { key });
    expect(status.body).toMatchObject({ state: 'verified', size: png.length });
  });
});

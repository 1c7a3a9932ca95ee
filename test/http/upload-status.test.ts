import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BYTES } from '../../src/domain/media-types.js';
import { GENUINE, GENUINE_DEEP, GENUINE_MEDIA, HOSTILE_MEDIA, presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let alice: string;
let bob: string;

beforeAll(async () => {
  server = await startTestServer();
  alice = (await server.createKey('alice')).key;
  bob = (await server.createKey('bob')).key;
});

afterAll(async () => {
  await server?.stop();
});

const statusOf = (key: string, apiKey = alice) => server.api('GET', `/api/uploads/status?key=${encodeURIComponent(key)}`, { key: apiKey });

describe('GET /api/uploads/status', () => {
  it('moves pending → uploaded → verified, answering exactly the documented fields', async () => {
    const { s3_key, upload_url } = await presignAndPut(server, alice, 'image/png', null);
    const pending = await statusOf(s3_key);
    expect(pending.status).toBe(200);
    const presigned = await server.db.selectFrom('uploads').select('expires_at').where('s3_key', '=', s3_key).executeTakeFirstOrThrow();
    expect(pending.body).toEqual({
      s3_key,
      state: 'pending',
      content_type: 'image/png',
      size: null,
      max_bytes: MAX_BYTES.image,
      sniffed_type: null,
      media: null,
      // When its URL expires; no retention applies to what is not stored.
      expires_at: new Date(presigned.expires_at).toISOString(),
      delete_after: null,
    });

    const bytes = readFixture('sample.png');
    const put = await fetch(upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(bytes) });
    expect(put.status).toBe(200);
    const row = await server.db.selectFrom('uploads').select('state').where('s3_key', '=', s3_key).executeTakeFirstOrThrow();
    expect(row.state).toBe('uploaded');

    const verified = await statusOf(s3_key);
    expect(verified.status).toBe(200);
    const { uploaded_at } = await server.db.selectFrom('uploads').select('uploaded_at').where('s3_key', '=', s3_key).executeTakeFirstOrThrow();
    expect(verified.body).toEqual({
      s3_key,
      state: 'verified',
      content_type: 'image/png',
      size: bytes.length,
      max_bytes: MAX_BYTES.image,
      sniffed_type: 'image/png',
      media: { width: 16, height: 16, duration_seconds: null, video_codec: 'png', audio_codec: null },
      expires_at: null,
      // Never used by a generation: the default unused retention (7 days) from its arrival.
      delete_after: new Date(Date.parse(uploaded_at!) + 7 * 86_400_000).toISOString(),
    });
    // Remembered: asking again gives the same answer.
    expect((await statusOf(s3_key)).body).toEqual(verified.body);
  });

  it.each([...GENUINE, ...GENUINE_DEEP])('verifies the genuine $file declared as $contentType, answering its media', async ({ file, contentType }) => {
    const { s3_key } = await presignAndPut(server, alice, contentType, readFixture(file));
    const res = await statusOf(s3_key);
    expect(res.status).toBe(200);
    const { duration, ...media } = GENUINE_MEDIA[file]!;
    expect(res.body).toMatchObject({ state: 'verified', size: readFixture(file).length, media });
    expect(Object.keys(res.body.media).sort()).toEqual(['audio_codec', 'duration_seconds', 'height', 'video_codec', 'width']);
    expect(res.body.media.duration_seconds === null).toBe(!duration);
  });

  it.each([
    ['page.html', 'image/png', /not a recognised image format/],
    ['image.svg', 'image/png', /application\/xml, not the declared image\/png/],
    ['polyglot-html-png.html', 'image/png', /not a recognised image format/],
    ['sample.jpg', 'image/png', /image\/jpeg, not the declared image\/png/],
    ['sample.mp3', 'video/mp4', /audio\/mpeg, not the declared video\/mp4/],
    ['random.bin', 'audio/mpeg', /not a recognised audio format/],
    ['empty.bin', 'image/png', /empty/],
    ['truncated.png', 'image/png', /incomplete/],
    ['truncated.mp4', 'video/mp4', /incomplete/],
    ...HOSTILE_MEDIA.map((h): [string, string, RegExp] => [h.file, h.contentType, h.reason]),
  ] as [string, string, RegExp][])('rejects %s declared as %s with a reason, and deletes the object', async (file, contentType, reason) => {
    const { s3_key } = await presignAndPut(server, alice, contentType, readFixture(file));
    const res = await statusOf(s3_key);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ s3_key, state: 'rejected', content_type: contentType, media: null });
    expect(res.body.reason).toMatch(reason);
    expect(await server.store.head(s3_key)).toBeNull();
    // The object cannot be fetched any more, even with a valid download URL.
    const download = await fetch(await server.store.presignGet(s3_key, 60));
    expect(download.status).toBe(404);
  });

  it('says expired for a pending upload whose URL expired unused', async () => {
    const { s3_key } = await presignAndPut(server, alice, 'video/webm', null);
    await server.db.updateTable('uploads').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('s3_key', '=', s3_key).execute();
    const res = await statusOf(s3_key);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ state: 'expired', size: null });
  });

  it("answers another user's key exactly like a missing or malformed key: 404 not_found", async () => {
    const { s3_key } = await presignAndPut(server, alice, 'image/png', readFixture('sample.png'));
    const asBob = await statusOf(s3_key, bob);
    const missing = await statusOf(s3_key.replace(/file_[^.]+/, 'file_doesnotexist0000000000'));
    const malformed = await statusOf('users/alice/../../etc/passwd');
    for (const res of [asBob, missing, malformed]) {
      expect(res.status).toBe(404);
      expect(res.body).toEqual({ error: 'not_found', message: 'Upload not found' });
    }
    expect(asBob.body).toEqual(missing.body);
    // Bob's question neither verified nor changed Alice's upload.
    const row = await server.db.selectFrom('uploads').select('state').where('s3_key', '=', s3_key).executeTakeFirstOrThrow();
    expect(row.state).toBe('uploaded');
  });

  it('needs the key parameter: 400 validation_error', async () => {
    const res = await server.api('GET', '/api/uploads/status', { key: alice });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('validation_error');
    expect(res.body.message).toMatch(/key/);
  });

  it('refuses a missing or unknown API key with 401, and a key without the scope with 403', async () => {
    const { s3_key } = await presignAndPut(server, alice, 'image/png', null);
    expect(await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(s3_key)}`)).toMatchObject({
      status: 401,
      body: { error: 'unauthorized', message: 'Invalid or missing API key' },
    });
    expect((await statusOf(s3_key, 'prism_sk_not-a-real-key')).status).toBe(401);
    const scopeless = (await server.createKey('alice', ['something:else'])).key;
    expect(await statusOf(s3_key, scopeless)).toMatchObject({ status: 403, body: { error: 'forbidden' } });
  });

  it('is described in the OpenAPI document', async () => {
    const res = await server.api('GET', '/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.paths['/api/uploads/status'].get.parameters).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: 'key', in: 'query', required: true })]),
    );
  });

  it('answers other methods with 405 in the error envelope', async () => {
    const res = await server.api('POST', '/api/uploads/status?key=x', { key: alice, body: {} });
    expect(res.status).toBe(405);
    expect(res.body.error).toBe('method_not_allowed');
    expect(res.headers.get('allow')).toBe('GET');
  });
});

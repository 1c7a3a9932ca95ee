/**
 * Peer "the usual way" on PostgreSQL: the same endpoint and Fastify set-up as
 * bench/servers/sdk-presign.ts, on a PostgreSQL database with Keyframe's
 * schema (`DATABASE_URL`), built as most services build it: a `pg` pool of
 * `POOL_SIZE` connections, the key looked up by SHA-256 with one query, the
 * URL from the AWS SDK's getSignedUrl, and one INSERT per request through the pool.
 */
import { createHash } from 'node:crypto';
import Fastify from 'fastify';
import pg from 'pg';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { loggerOptions } from '../../src/http/logging.js';
import { lookupMediaType, MAX_BYTES } from '../../src/domain/media-types.js';
import { newUploadKey } from '../../src/domain/object-keys.js';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.POOL_SIZE ?? 10) });
const FIND_KEY = 'select user_id, scopes, revoked_at from api_keys where key_hash = $1';
const INSERT_UPLOAD = `insert into uploads (s3_key, user_id, content_type, max_bytes, content_length, file_name, state, created_at, expires_at)
   values ($1, $2, $3, $4, null, $5, 'pending', $6, $7)`;

const s3 = new S3Client({
  endpoint: `http://127.0.0.1:${process.env.PORT}`,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: 'bench', secretAccessKey: 'bench-secret-bench-secret-bench-secret' },
});

const app = Fastify({ logger: loggerOptions('info'), bodyLimit: 1024 * 1024 });
app.post('/api/s3/presign-upload', async (request, reply) => {
  const token = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1] ?? '';
  const { rows } = await pool.query<{ user_id: string; scopes: string; revoked_at: unknown }>(FIND_KEY, [
    createHash('sha256').update(token).digest('hex'),
  ]);
  const row = rows[0];
  if (!row || row.revoked_at !== null) return reply.code(401).send({ error: 'unauthorized', message: 'Invalid or missing API key' });
  const body = request.body as { kind?: unknown; contentType?: unknown; fileName?: unknown };
  const media = typeof body?.contentType === 'string' ? lookupMediaType(body.contentType) : undefined;
  if (body?.kind !== 'upload' || !media) return reply.code(400).send({ error: 'validation_error', message: 'invalid body' });
  const { key } = newUploadKey(row.user_id, media.extension);
  const url = await getSignedUrl(s3, new PutObjectCommand({ Bucket: 'keyframe', Key: key, ContentType: media.contentType }), {
    expiresIn: 900,
  });
  const now = new Date();
  await pool.query(INSERT_UPLOAD, [
    key,
    row.user_id,
    media.contentType,
    MAX_BYTES[media.family],
    typeof body.fileName === 'string' ? body.fileName : null,
    now.toISOString(),
    new Date(now.getTime() + 900_000).toISOString(),
  ]);
  return { s3_key: key, upload_url: url, content_type: media.contentType, max_bytes: MAX_BYTES[media.family] };
});
app.get('/healthz', async () => ({ ok: true }));
app.addHook('onClose', () => pool.end());
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });

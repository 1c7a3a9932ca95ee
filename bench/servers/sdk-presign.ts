/**
 * Peer "the usual way": the same endpoint, same Fastify set-up, same database
 * file and schema, built as most services build it: the AWS SDK's
 * getSignedUrl for the URL and one synchronous better-sqlite3 insert per
 * request (the key lookup is a synchronous prepared statement too).
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import Fastify from 'fastify';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { loggerOptions } from '../../src/http/logging.js';
import { lookupMediaType, MAX_BYTES } from '../../src/domain/media-types.js';
import { newUploadKey } from '../../src/domain/object-keys.js';

const dataDir = process.env.KEYFRAME_DATA_DIR!;
const db = new SQLite(path.join(dataDir, 'keyframe.sqlite'));
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
const findKey = db.prepare('select user_id, scopes, revoked_at from api_keys where key_hash = ?');
const insertUpload = db.prepare(
  `insert into uploads (s3_key, user_id, content_type, max_bytes, content_length, file_name, state, created_at, expires_at)
   values (?, ?, ?, ?, null, ?, 'pending', ?, ?)`,
);

const s3 = new S3Client({
  endpoint: `http://127.0.0.1:${process.env.PORT}`,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: 'bench', secretAccessKey: 'bench-secret-bench-secret-bench-secret' },
});

const app = Fastify({ logger: loggerOptions('info'), bodyLimit: 1024 * 1024 });
app.post('/api/s3/presign-upload', async (request, reply) => {
  const token = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1] ?? '';
  const row = findKey.get(createHash('sha256').update(token).digest('hex')) as
    | { user_id: string; scopes: string; revoked_at: string | null }
    | undefined;
  if (!row || row.revoked_at !== null) return reply.code(401).send({ error: 'unauthorized', message: 'Invalid or missing API key' });
  const body = request.body as { kind?: unknown; contentType?: unknown; fileName?: unknown };
  const media = typeof body?.contentType === 'string' ? lookupMediaType(body.contentType) : undefined;
  if (body?.kind !== 'upload' || !media) return reply.code(400).send({ error: 'validation_error', message: 'invalid body' });
  const { key } = newUploadKey(row.user_id, media.extension);
  const url = await getSignedUrl(s3, new PutObjectCommand({ Bucket: 'keyframe', Key: key, ContentType: media.contentType }), {
    expiresIn: 900,
  });
  const now = new Date();
  insertUpload.run(
    key,
    row.user_id,
    media.contentType,
    MAX_BYTES[media.family],
    typeof body.fileName === 'string' ? body.fileName : null,
    now.toISOString(),
    new Date(now.getTime() + 900_000).toISOString(),
  );
  return { s3_key: key, upload_url: url, content_type: media.contentType, max_bytes: MAX_BYTES[media.family] };
});
app.get('/healthz', async () => ({ ok: true }));
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });

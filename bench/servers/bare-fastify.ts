/**
 * Peer "framework ceiling": the same Fastify set-up as Keyframe (logger, body
 * limit, JSON body parsing) with a route that answers a fixed JSON body of the
 * size of a real presign answer. No auth, no signing, no database.
 */
import Fastify from 'fastify';
import { loggerOptions } from '../../src/http/logging.js';

const size = Number(process.env.BODY_BYTES ?? 400);
const prefix = '{"s3_key":"users/u/user-uploads/x.png","upload_url":"';
const suffix = '","content_type":"image/png","max_bytes":20971520}';
const fixed = prefix + 'x'.repeat(Math.max(0, size - prefix.length - suffix.length)) + suffix;

const app = Fastify({ logger: loggerOptions('info'), bodyLimit: 1024 * 1024 });
app.post('/api/s3/presign-upload', async (_request, reply) => reply.type('application/json; charset=utf-8').send(fixed));
app.get('/healthz', async () => ({ ok: true }));
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });

/**
 * Peer "runtime ceiling" for uploads: a bare node:http handler that streams the
 * body to a temporary file while hashing it with SHA-256, fsyncs, and renames
 * it into place: what Keyframe's store does (1 MiB write batches and its
 * flushing while the body arrives included), without signature, limits or
 * records.
 */
import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { syncWhileArriving } from '../../src/storage/disk/early-sync.js';

const dir = process.env.BENCH_DIR!;
await fsp.mkdir(dir, { recursive: true });

const server = http.createServer(async (req, res) => {
  if (req.method !== 'PUT') return void res.end('{"ok":true}');
  const hash = createHash('sha256');
  const name = randomBytes(8).toString('hex');
  const tmp = path.join(dir, `${name}.part`);
  const file = await fsp.open(tmp, 'wx');
  const noteReceived = syncWhileArriving(file);
  let size = 0;
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      noteReceived(size);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(req, hasher, file.createWriteStream({ flush: true, highWaterMark: 1024 * 1024 }));
    await fsp.rename(tmp, path.join(dir, name));
    res.writeHead(200, { etag: `"${hash.digest('hex').slice(0, 32)}"` }).end();
  } catch {
    await fsp.rm(tmp, { force: true });
    res.writeHead(400).end();
  }
});
server.listen(Number(process.env.PORT), '127.0.0.1');

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { LoadFigures } from './presign-load.js';
import { ROOT } from './processes.js';

/** Presigns, uploads and verifies the sample PNG for the key's user; resolves to its s3_key. */
export async function verifiedUpload(url: string, key: string): Promise<string> {
  const auth = { authorization: `Bearer ${key}` };
  const presign = await fetch(`${url}/api/s3/presign-upload`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'upload', contentType: 'image/png' }),
  });
  if (presign.status !== 200) throw new Error(`presign of the status fixture answered ${presign.status}: ${await presign.text()}`);
  const { upload_url: uploadUrl, s3_key: s3Key } = (await presign.json()) as { upload_url: string; s3_key: string };
  const put = await fetch(uploadUrl, {
    method: 'PUT',
    headers: { 'content-type': 'image/png' },
    body: await readFile(path.join(ROOT, 'test/fixtures/media/sample.png')),
  });
  if (!put.ok) throw new Error(`upload of the status fixture answered ${put.status}`);
  const status = (await (await fetch(`${url}/api/uploads/status?key=${encodeURIComponent(s3Key)}`, { headers: auth })).json()) as { state: string };
  if (status.state !== 'verified') throw new Error(`the status fixture is ${status.state}, not verified`);
  return s3Key;
}

/** Requests/s of a load whose every answer was a 2xx; a bench must not time error pages. */
export function okRps(figures: LoadFigures, what: string): number {
  if (figures.errors > 0 || figures.non2xx > 0) throw new Error(`${what}: ${figures.errors} errors and ${figures.non2xx} non-2xx answers`);
  return figures.rps;
}

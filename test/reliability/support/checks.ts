import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import { ERROR_STATUS } from '../../../src/domain/errors.js';

/** Signs that an answer leaks internals: stack frames, file paths of the checkout, framework codes. */
export function leaks(text: string, secrets: string[] = []): string | null {
  if (/\n\s+at .+[:(]\d+/.test(text) || /\bat [^\s]+ \(.*:\d+:\d+\)/.test(text)) return 'a stack trace';
  if (text.includes(process.cwd())) return 'the checkout path';
  if (text.includes('node_modules')) return 'node_modules';
  if (/FST_[A-Z_]+|ERR_[A-Z_]{4,}|SQLITE_/.test(text)) return 'an internal error code';
  for (const secret of secrets) if (secret && text.includes(secret)) return 'a secret';
  return null;
}

/** Asserts a JSON API answer is a 4xx in the one envelope, with nothing internal in it. */
export function expectEnvelope4xx(status: number, text: string, context: string, secrets: string[] = []): { error: string; message: string } {
  expect(status, `${context}: status`).toBeGreaterThanOrEqual(400);
  expect(status, `${context}: status`).toBeLessThan(500);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${context}: answer ${status} is not JSON: ${JSON.stringify(text.slice(0, 300))}`);
  }
  expect(Object.keys(body as object).sort(), `${context}: envelope keys of ${text.slice(0, 300)}`).toEqual(['error', 'message']);
  const { error, message } = body as { error: unknown; message: unknown };
  expect(typeof error, context).toBe('string');
  expect(typeof message, context).toBe('string');
  expect(ERROR_STATUS[error as keyof typeof ERROR_STATUS], `${context}: code ${String(error)} for ${status}`).toBe(status);
  expect(leaks(text, secrets), `${context}: ${text.slice(0, 300)}`).toBeNull();
  return body as { error: string; message: string };
}

/** Asserts an answer of the object endpoint is an S3-style XML 4xx refusal. */
export function expectS3Refusal(status: number, text: string, context: string, method = 'PUT'): string {
  expect(status, `${context}: status`).toBeGreaterThanOrEqual(400);
  expect(status, `${context}: status`).toBeLessThan(500);
  expect(leaks(text), `${context}: ${text.slice(0, 300)}`).toBeNull();
  if (method === 'HEAD') return '';
  const code = /^<\?xml version="1.0" encoding="UTF-8"\?>\n<Error><Code>([A-Za-z]+)<\/Code><Message>[^<]*<\/Message><\/Error>$/.exec(text)?.[1];
  expect(code, `${context}: XML error body, got ${JSON.stringify(text.slice(0, 300))}`).toBeDefined();
  return code!;
}

/** Every file under `dir`, relative to it; [] when the directory does not exist. */
export async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Polls `check` until it returns true or `ms` pass; returns the last result. */
export async function eventually(check: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

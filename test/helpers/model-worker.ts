import { createHmac } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

/**
 * Pieces of the tests' loopback model workers (runner `http`, docs/generations.md): the registry
 * entry of a model run by one, and the signed callback a worker sends when a job ends.
 */

/** A registry entry (config/models.json's shape) for a model whose jobs go to the model worker at `url`: a start frame, 4 s at 480p. */
export function httpModelEntry(url: string, latencyEstimateSec = { typical: 1, busy: 2 }) {
  return {
    runner: { type: 'http', url },
    referenceFields: ['startFrameKey'],
    maxIngredientImages: 0,
    durations: ['4s'],
    resolutions: ['480p'],
    aspectRatios: ['16:9'],
    audio: false,
    defaults: { duration: '4s', resolution: '480p', aspectRatio: '16:9', hasAudio: false },
    latencyEstimateSec,
  };
}

/** Writes a models file holding `models` into `dir` (a name of its own each time); its path, for KEYFRAME_MODELS_FILE. */
export async function writeModelsFile(dir: string, models: Record<string, unknown>): Promise<string> {
  const file = path.join(dir, `models-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify({ models }));
  return file;
}

/** What a model worker is handed for a job: where and how to call back. */
export interface CallbackTarget {
  callbackUrl: string;
  callbackSecret: string;
}

/** The callback's body and header, signed as a model worker signs it: an HMAC-SHA256 of the exact bytes. */
export function signCallback(job: CallbackTarget, outcome: object): { payload: string; signature: string } {
  const payload = JSON.stringify(outcome);
  return { payload, signature: `sha256=${createHmac('sha256', job.callbackSecret).update(payload).digest('hex')}` };
}

/** POSTs a signed callback (or `signed`, to replay one); the answer's status. */
export async function sendCallback(job: CallbackTarget, signed: { payload: string; signature: string }): Promise<number> {
  const res = await fetch(job.callbackUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-keyframe-signature': signed.signature },
    body: signed.payload,
  });
  await res.arrayBuffer();
  return res.status;
}

/**
 * The HTTP side of a loopback model worker: every POST's JSON body is a job, accepted with 202
 * and handed to `onJob` with the path it came to (the path names the model, so one worker can
 * behave differently per model). Subclasses decide what a job does.
 */
export abstract class LoopbackModelWorker<Job> {
  private readonly server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      res.writeHead(202).end();
      this.onJob(JSON.parse(body) as Job, req.url ?? '/');
    });
  });

  protected abstract onJob(job: Job, path: string): void;

  /** Listens (once) and returns the worker's base URL. */
  async start(): Promise<string> {
    if (!this.server.listening) await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

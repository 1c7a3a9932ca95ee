import { randomBytes } from 'node:crypto';
import { fileTypeFromBuffer } from 'file-type';
import type { GenerationJob } from '../../domain/generations/job.js';
import type { RunnerSpec } from '../../domain/generations/model-registry.js';
import { RunnerFailure, type CallbackOutcome, type RenderedVideo, type Runner, type RunnerCallbacks } from '../../domain/generations/runner.js';
import { MAX_BYTES } from '../../domain/media-types.js';
import type { ObjectStore } from '../../storage/object-store.js';
import { callbackSignatureValid } from './callback-signature.js';

/** What Keyframe POSTs to a model worker; docs/generations.md documents it. */
export interface WorkerJobRequest {
  id: string;
  modelName: string;
  prompt: string;
  aspectRatio: string;
  duration: string;
  resolution: string;
  hasAudio: boolean;
  references: { field: string; url: string; contentType: string }[];
  output: { uploadUrl: string; contentType: 'video/mp4' };
  callbackUrl: string;
  /** HMAC key the worker signs its callback with; valid for this job only. */
  callbackSecret: string;
  expiresAt: string;
}

interface Pending {
  secret: string;
  videoKey: string;
  settle: (outcome: { ok: true } | { ok: false; error: string }) => void;
}

export interface HttpRunnerOptions {
  store: ObjectStore;
  /** Base URL of this server, which workers call back. */
  publicUrl: string;
  /** The worker URL of a model. */
  workerUrl: (modelName: string) => string;
}

/**
 * Runs a job on an operator's model worker: POSTs it with short-lived
 * presigned URLs (GET for each reference, PUT for the result) and waits for
 * the worker's completion callback, signed with a secret made for this job.
 */
export class HttpRunner implements Runner, RunnerCallbacks {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly options: HttpRunnerOptions) {}

  async run(job: GenerationJob, signal: AbortSignal): Promise<RenderedVideo> {
    const { store } = this.options;
    const ttl = Math.max(60, Math.ceil((job.deadline.getTime() - Date.now()) / 1000));
    const secret = randomBytes(32).toString('base64url');
    const body: WorkerJobRequest = {
      id: job.id,
      modelName: job.modelName,
      prompt: job.prompt,
      aspectRatio: job.params.aspectRatio,
      duration: job.params.duration,
      resolution: job.params.resolution,
      hasAudio: job.params.hasAudio,
      references: await Promise.all(
        job.params.references.map(async (r) => ({ field: r.field, url: await store.presignGet(r.key, ttl), contentType: r.contentType })),
      ),
      output: {
        uploadUrl: await store.presignPut({ key: job.videoKey, contentType: 'video/mp4', maxBytes: MAX_BYTES.video, contentLength: null, expiresInSeconds: ttl }),
        contentType: 'video/mp4',
      },
      callbackUrl: `${this.options.publicUrl}/api/generations/${encodeURIComponent(job.id)}/callback`,
      callbackSecret: secret,
      expiresAt: job.deadline.toISOString(),
    };

    const outcome = new Promise<{ ok: true } | { ok: false; error: string }>((settle) => {
      this.pending.set(job.id, { secret, videoKey: job.videoKey, settle });
    });
    try {
      let res: Response;
      try {
        res = await fetch(this.options.workerUrl(job.modelName), {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.any([signal, AbortSignal.timeout(30_000)]),
        });
        await res.body?.cancel();
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        throw new RunnerFailure('Generation failed: the model worker could not be reached', { cause: err });
      }
      if (!res.ok) throw new RunnerFailure(`Generation failed: the model worker refused the job (HTTP ${res.status})`);

      const result = await new Promise<{ ok: true } | { ok: false; error: string }>((resolve, reject) => {
        if (signal.aborted) return reject(signal.reason);
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        outcome.then(resolve);
      });
      if (!result.ok) throw new RunnerFailure(result.error);
      await this.checkResult(job.videoKey);
      return { key: job.videoKey };
    } finally {
      this.pending.delete(job.id);
    }
  }

  async accept(generationId: string, rawBody: string, signature: string | undefined): Promise<CallbackOutcome> {
    const pending = this.pending.get(generationId);
    if (!pending) return 'unknown_job';
    if (!callbackSignatureValid(pending.secret, rawBody, signature)) return 'bad_signature';
    let parsed: { status?: unknown; error?: unknown };
    try {
      parsed = JSON.parse(rawBody) as typeof parsed;
    } catch {
      return 'malformed';
    }
    if (parsed.status === 'completed') pending.settle({ ok: true });
    else if (parsed.status === 'failed') {
      const error = typeof parsed.error === 'string' && parsed.error.trim() !== '' ? parsed.error.trim().slice(0, 500) : 'the model worker gave no reason';
      pending.settle({ ok: false, error: `Generation failed: ${error}` });
    } else return 'malformed';
    return 'accepted';
  }

  /** The worker said it uploaded the video: it must be there, and be an MP4. */
  private async checkResult(key: string): Promise<void> {
    const head = await this.options.store.getRange(key, 0, 4099);
    if (!head || head.length === 0) throw new RunnerFailure('Generation failed: the model worker reported completion but uploaded no video');
    const type = await fileTypeFromBuffer(head);
    if (type?.mime !== 'video/mp4') {
      await this.options.store.delete(key);
      throw new RunnerFailure('Generation failed: the model worker uploaded something that is not an MP4 video');
    }
  }
}

/** The worker URL of each http model, from the registry. */
export function workerUrlsOf(models: { name: string; runner: RunnerSpec }[]): (modelName: string) => string {
  const urls = new Map(models.flatMap((m) => (m.runner.type === 'http' ? [[m.name, m.runner.url] as const] : [])));
  return (modelName) => {
    const url = urls.get(modelName);
    if (!url) throw new RunnerFailure(`Model ${modelName} has no worker URL`);
    return url;
  };
}

import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { fileTypeFromBuffer } from 'file-type';
import type { GenerationJob, JobReference } from '../../domain/generations/job.js';
import type { RunnerSpec } from '../../domain/generations/model-registry.js';
import {
  referenceChanged,
  RunnerFailure,
  verifiedEtag,
  type RenderedVideo,
  type Runner,
} from '../../domain/generations/runner.js';
import { downloadHeaders, lookupMediaType, MAX_BYTES } from '../../domain/media-types.js';
import { generationReferenceCopyKey, generationStagingKey } from '../../domain/object-keys.js';
import type { DownloadHeaders, ObjectStore } from '../../storage/object-store.js';
import type { AwaitedCallback, CallbackLedger } from './callback-ledger.js';

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
  /** HMAC key the worker signs its callback with; valid for this run of the job only, and for one callback. */
  callbackSecret: string;
  expiresAt: string;
}

/** Bytes `file-type` needs to recognise an MP4. */
const SNIFF_BYTES = 4100;

export interface HttpRunnerOptions {
  store: ObjectStore;
  /** The URL model workers call back: an API node (or the load balancer in front of them), not necessarily this process. */
  publicUrl: string;
  /** Where runs await their callbacks, which any API node may accept. */
  callbacks: CallbackLedger;
  /** The worker URL of a model. */
  workerUrl: (modelName: string) => string;
  /** Where failures with details not fit for clients are logged. */
  log?: (err: unknown, generationId: string) => void;
}

/**
 * Runs a job on an operator's model worker: POSTs it with short-lived
 * presigned URLs and waits for the worker's completion callback, signed with a
 * secret made for this job.
 *
 * Nothing the worker is handed can be swapped under it:
 * - each reference is first copied by a read pinned to its verified ETag into a
 *   job-private key only the server writes (`generationReferenceCopyKey`), and
 *   the worker GETs that copy, never the upload, whose presigned PUT URL may
 *   still be valid (S3 cannot refuse a replay);
 * - the worker PUTs its video to a staging key (`generationStagingKey`); on the
 *   first accepted callback the server checks the staged object is an MP4 and
 *   copies it, pinned to the ETag it checked, into the job's video key, so a
 *   replay of the PUT URL can only ever write the staging key, which nothing serves;
 * - the callback secret is single-use: the first accepted callback consumes it,
 *   and a replay gets the answer of an unknown job (src/runners/http/callback-ledger.ts).
 */
export class HttpRunner implements Runner {
  constructor(private readonly options: HttpRunnerOptions) {}

  async run(job: GenerationJob, signal: AbortSignal): Promise<RenderedVideo> {
    const { store } = this.options;
    const ttl = Math.max(60, Math.ceil((job.deadline.getTime() - Date.now()) / 1000));
    // A run before a restart stored the video and was cut off before recording it: nothing to do again.
    if (await store.head(job.videoKey)) return { key: job.videoKey };
    const runId = randomBytes(12).toString('base64url');
    const stagingKey = generationStagingKey(job.userId, job.id, runId);
    const written: string[] = [stagingKey];
    let awaited: AwaitedCallback | null = null;
    try {
      const references: WorkerJobRequest['references'] = [];
      for (const [i, ref] of job.params.references.entries()) {
        const copy = await this.pinnedCopy(job, runId, ref, i, signal);
        written.push(copy.key);
        references.push({ field: ref.field, url: await store.presignGet(copy.key, ttl, copy.download), contentType: ref.contentType });
      }
      // Recorded before the job is handed out: the worker may call back at once.
      awaited = await this.options.callbacks.open(job.id, runId);
      const body: WorkerJobRequest = {
        id: job.id,
        modelName: job.modelName,
        prompt: job.prompt,
        aspectRatio: job.params.aspectRatio,
        duration: job.params.duration,
        resolution: job.params.resolution,
        hasAudio: job.params.hasAudio,
        references,
        output: {
          uploadUrl: await store.presignPut({ key: stagingKey, contentType: 'video/mp4', maxBytes: MAX_BYTES.video, contentLength: null, expiresInSeconds: ttl }),
          contentType: 'video/mp4',
        },
        callbackUrl: `${this.options.publicUrl}/api/generations/${encodeURIComponent(job.id)}/callback`,
        callbackSecret: awaited.secret,
        expiresAt: job.deadline.toISOString(),
      };

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

      const result = await awaited.outcome(signal);
      if (!result.ok) throw new RunnerFailure(result.error);
      await this.publishResult(stagingKey, job.videoKey);
      return { key: job.videoKey };
    } finally {
      await awaited?.close();
      // The copies and the staged upload served their purpose; a failed delete only leaves an object nothing serves.
      await Promise.all(written.map((key) => store.delete(key).catch((err: unknown) => this.options.log?.(err, job.id))));
    }
  }

  /**
   * The job-private copy of one reference, read pinned to its verified ETag:
   * a reference replaced or removed since verification fails the job.
   */
  private async pinnedCopy(job: GenerationJob, runId: string, ref: JobReference, index: number, signal: AbortSignal): Promise<{ key: string; download: DownloadHeaders }> {
    const etag = verifiedEtag(ref);
    const media = lookupMediaType(ref.contentType);
    if (!media || media.family !== ref.family) throw new RunnerFailure(`Generation failed: the ${ref.field} reference has a type this server no longer accepts`);
    const key = generationReferenceCopyKey(job.userId, job.id, runId, index, media.extension);
    const body = await this.options.store.openVerified(ref.key, etag);
    if (body === 'changed' || body === 'missing') throw referenceChanged(ref.field);
    const onAbort = () => body.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await this.options.store.put(key, body, media.contentType);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      this.options.log?.(err, job.id);
      throw new RunnerFailure(`Generation failed: the ${ref.field} reference could not be read`);
    } finally {
      signal.removeEventListener('abort', onAbort);
      body.destroy();
    }
    return { key, download: downloadHeaders(media.contentType) };
  }

  /**
   * The worker said it uploaded the video: the staged object must be there,
   * within the video size limit, and be an MP4. What is checked and what is
   * published are the same bytes: both come from one read pinned to the ETag
   * the staged object had when it was looked at.
   */
  private async publishResult(stagingKey: string, videoKey: string): Promise<void> {
    const { store } = this.options;
    const info = await store.head(stagingKey);
    if (!info || info.size === 0) throw new RunnerFailure('Generation failed: the model worker reported completion but uploaded no video');
    if (info.size > MAX_BYTES.video || !info.etag) throw new RunnerFailure('Generation failed: the model worker uploaded something that is not an MP4 video');
    const body = await store.openVerified(stagingKey, info.etag);
    if (body === 'missing') throw new RunnerFailure('Generation failed: the model worker reported completion but uploaded no video');
    if (body === 'changed') throw new RunnerFailure('Generation failed: the model worker replaced its video while it was being checked');
    try {
      const { head, stream } = await peek(body, SNIFF_BYTES);
      const type = await fileTypeFromBuffer(head);
      if (type?.mime !== 'video/mp4') throw new RunnerFailure('Generation failed: the model worker uploaded something that is not an MP4 video');
      await store.put(videoKey, stream, 'video/mp4');
    } finally {
      body.destroy();
    }
  }
}

/** The first `bytes` of `body` (fewer when it is shorter), and a stream of all of it, those bytes included. */
async function peek(body: Readable, bytes: number): Promise<{ head: Buffer; stream: Readable }> {
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  while (size < bytes) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    chunks.push(next.value);
    size += next.value.length;
  }
  const head = Buffer.concat(chunks).subarray(0, bytes);
  async function* all(): AsyncGenerator<Buffer> {
    yield* chunks;
    if (done) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { head, stream: Readable.from(all(), { objectMode: false }) };
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

import type { GenerationJob, JobReference } from './job.js';

/** A finished video, stored under the job's `videoKey`. */
export interface RenderedVideo {
  key: string;
}

/**
 * Makes the video of one job. `signal` aborts it (time limit, shutdown); a
 * runner must then stop its work and reject promptly.
 */
export interface Runner {
  run(job: GenerationJob, signal: AbortSignal): Promise<RenderedVideo>;
}

/** A failure whose message is safe to show the client as the generation's `error`. */
export class RunnerFailure extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RunnerFailure';
  }
}

/** The failure of a reference whose object is no longer the one verified (replaced by a second PUT of its upload URL, or deleted). */
export const referenceChanged = (field: string) => new RunnerFailure(`${field}: the upload was replaced or removed after it was verified`);

/**
 * The ETag a reference was verified with, which every read of it is pinned
 * to. Jobs queued before ETags were recorded have none: they fail rather than
 * read bytes nobody can vouch for.
 */
export function verifiedEtag(reference: JobReference): string {
  if (typeof reference.etag === 'string' && reference.etag !== '') return reference.etag;
  throw new RunnerFailure(`${reference.field}: this generation was queued before its references were pinned to the verified bytes; submit it again`);
}

/** Header carrying a model worker's signature of its completion callback. */
export const CALLBACK_SIGNATURE_HEADER = 'x-keyframe-signature';

/**
 * Outcome of a signed completion callback from a model worker. `unverifiable`: this node cannot
 * check the signature (it derives another secret than the node that ran the job: their signing
 * secrets differ), a fault of the server, not of the worker, whose retry may reach a node that can.
 */
export type CallbackOutcome = 'accepted' | 'unknown_job' | 'bad_signature' | 'malformed' | 'unverifiable';

/** Receives the completion callbacks of runners whose work happens elsewhere, for jobs run by any worker. */
export interface RunnerCallbacks {
  accept(generationId: string, rawBody: string, signature: string | undefined): Promise<CallbackOutcome>;
}

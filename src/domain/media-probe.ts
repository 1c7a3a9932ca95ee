import type { MediaType } from './media-types.js';

/**
 * The domain's view of a media prober (ffprobe, src/media/ffprobe.ts): what a
 * private local file holds when opened with the one demuxer its declared type
 * implies, decoding a few frames of each stream. Verification uses it to vouch
 * that a reference decodes and is within MEDIA_LIMITS.
 */
export interface MediaProbe {
  /** Probes `file`; throws ProbeFailure when the prober could not finish. */
  probe(file: string, media: Pick<MediaType, 'demuxer'>, options: { signal: AbortSignal; cwd: string }): Promise<ProbeResult>;
}

export interface ProbeResult {
  streams: ProbedStream[];
  /** Duration of the whole file as the container (or the bitrate) states it; null when unknown. */
  durationSeconds: number | null;
}

export interface ProbedStream {
  kind: 'video' | 'audio' | 'other';
  codec: string | null;
  width: number | null;
  height: number | null;
  /** Frames decoded from the first packets: 0 when the data does not decode. */
  framesDecoded: number;
}

/** The prober did not finish: stopped by a limit (CPU, memory, time, output), or it could not read the file at all. */
export class ProbeFailure extends Error {
  constructor(
    /** Safe to show a client: names the limit, never paths or stderr. */
    readonly reason: string,
    readonly stoppedBy: 'limit' | 'unreadable',
    options?: ErrorOptions,
  ) {
    super(reason, options);
    this.name = 'ProbeFailure';
  }
}

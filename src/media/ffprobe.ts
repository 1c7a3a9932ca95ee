import path from 'node:path';
import type { MediaType } from '../domain/media-types.js';
import { ProbeFailure, type MediaProbe, type ProbeResult, type ProbedStream } from '../domain/media-probe.js';
import { ffprobePath } from './binaries.js';
import { ChildProcessFailure, runBounded, type ProcessLimits } from './bounded-process.js';
import { PROBE_LIMITS } from './limits.js';
import { restrictedInput } from './restricted-input.js';

/** Packets read (and decoded, to count frames) per file: enough to prove the data decodes, bounded whatever the file's length. */
const PACKETS_READ = 5;

/**
 * MediaProbe over ffprobe: the local file only (protocol whitelist `file`),
 * opened with the demuxer the declared type implies (never probed for one),
 * the first packets decoded, under PROBE_LIMITS and killed with its process
 * group past them.
 */
export class FfprobeMediaProbe implements MediaProbe {
  constructor(
    private readonly limits: ProcessLimits = PROBE_LIMITS,
    /** Bytes of JSON accepted from ffprobe (a few hundred for one file). */
    private readonly maxOutputBytes = 64 * 1024,
  ) {}

  async probe(file: string, media: Pick<MediaType, 'demuxer'>, options: { signal: AbortSignal; cwd: string }): Promise<ProbeResult> {
    const args = [
      '-v', 'error',
      ...restrictedInput(media),
      '-i', `file:${path.resolve(file)}`,
      '-count_frames',
      '-read_intervals', `%+#${PACKETS_READ}`,
      '-show_entries', 'stream=codec_type,codec_name,width,height,nb_read_frames:format=duration',
      '-of', 'json',
    ];
    let stdout: string;
    try {
      stdout = await runBounded(ffprobePath(), args, { limits: this.limits, signal: options.signal, cwd: options.cwd, maxStdoutBytes: this.maxOutputBytes });
    } catch (err) {
      if (!(err instanceof ChildProcessFailure)) throw err;
      if (err.stoppedBy === 'aborted') throw err;
      if (err.stoppedBy === 'exit') throw new ProbeFailure(`it could not be read as ${media.demuxer}`, 'unreadable', { cause: err });
      throw new ProbeFailure(`was not probed to the end: ffprobe was stopped ${LIMIT_WORDS[err.stoppedBy](this.limits)}`, 'limit', { cause: err });
    }
    return parseProbeOutput(stdout);
  }
}

const LIMIT_WORDS: Record<'cpu' | 'memory' | 'wall' | 'output', (l: ProcessLimits) => string> = {
  cpu: (l) => `at its ${l.cpuSeconds} s CPU limit`,
  memory: (l) => `at its ${Math.round(l.memoryBytes / 2 ** 20)} MiB memory limit`,
  wall: (l) => `at its ${l.wallSeconds} s time limit`,
  output: () => 'for writing too much output',
};

interface FfprobeJson {
  streams?: { codec_type?: string; codec_name?: string; width?: number; height?: number; nb_read_frames?: string }[];
  format?: { duration?: string };
}

/** ffprobe's JSON (numbers as it writes them: frames and duration are strings) as a ProbeResult. */
export function parseProbeOutput(stdout: string): ProbeResult {
  let json: FfprobeJson;
  try {
    json = JSON.parse(stdout) as FfprobeJson;
  } catch (err) {
    throw new ProbeFailure('its probe gave no readable answer', 'unreadable', { cause: err });
  }
  const streams: ProbedStream[] = (json.streams ?? []).map((s) => ({
    kind: s.codec_type === 'video' || s.codec_type === 'audio' ? s.codec_type : 'other',
    codec: typeof s.codec_name === 'string' ? s.codec_name : null,
    width: positiveInteger(s.width),
    height: positiveInteger(s.height),
    framesDecoded: positiveInteger(Number(s.nb_read_frames)) ?? 0,
  }));
  const duration = Number(json.format?.duration);
  return { streams, durationSeconds: json.format?.duration !== undefined && Number.isFinite(duration) && duration >= 0 ? duration : null };
}

const positiveInteger = (n: unknown) => (typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : null);

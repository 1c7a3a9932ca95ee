import type { ProcessLimits } from './bounded-process.js';

/**
 * ffprobe on one reference: reading headers and decoding a few frames of a
 * file within the media limits takes well under a second.
 */
export const PROBE_LIMITS: ProcessLimits = { cpuSeconds: 10, memoryBytes: 1024 * 2 ** 20, wallSeconds: 20 };

/**
 * ffmpeg rendering a clip: a 12 s 1080p clip takes ~10 CPU seconds here; the
 * limits leave room for a busy machine and cut off a decode loop long before
 * the job's own time limit. x264's threads reserve address space, hence 2 GiB.
 */
export function renderLimits(durationSeconds: number): ProcessLimits {
  const wallSeconds = 30 + 6 * durationSeconds;
  return { cpuSeconds: 2 * wallSeconds, memoryBytes: 2048 * 2 ** 20, wallSeconds };
}

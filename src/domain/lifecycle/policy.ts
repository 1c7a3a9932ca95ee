import type { Config } from '../../config.js';

/**
 * What the retention policy keeps, and for how long (docs/lifecycle.md). Every
 * duration is in seconds; null is "forever" (for `usedSeconds`: "as long as the
 * videos of the generations that used it").
 */
export interface RetentionPolicy {
  /** An upload no generation ever named: deleted this long after it arrived. */
  unusedSeconds: number | null;
  /** A used reference: deleted this long after the last generation that used it settled; null: with their videos. */
  usedSeconds: number | null;
  /** A completed generation's video: deleted this long after it completed. */
  videosSeconds: number | null;
  /**
   * How long after its URL expired a pending single-PUT upload is still waited for
   * before it is stored `expired`: an S3 PUT that began before the expiry may still be
   * streaming. The URL lifetime again, bounded to 60 s .. 1 h.
   */
  expiryGraceSeconds: number;
}

export const MIN_EXPIRY_GRACE_SECONDS = 60;
export const MAX_EXPIRY_GRACE_SECONDS = 3600;

export function retentionPolicyOf(config: Pick<Config, 'retention' | 'uploadUrlTtlSeconds'>): RetentionPolicy {
  return {
    unusedSeconds: config.retention.unusedSeconds,
    usedSeconds: config.retention.usedSeconds,
    videosSeconds: config.retention.videosSeconds,
    expiryGraceSeconds: Math.min(MAX_EXPIRY_GRACE_SECONDS, Math.max(MIN_EXPIRY_GRACE_SECONDS, config.uploadUrlTtlSeconds)),
  };
}

/** How used references go: never, a period after their generations settled, or when those generations' videos go. */
export function usedReferenceRule(policy: RetentionPolicy): 'forever' | 'after-settled' | 'with-videos' {
  if (policy.usedSeconds !== null) return 'after-settled';
  return policy.videosSeconds === null ? 'forever' : 'with-videos';
}

/** `at` plus `seconds`, as an ISO string. */
export function plusSeconds(at: string | Date, seconds: number): string {
  return new Date(new Date(at).getTime() + seconds * 1000).toISOString();
}

/** `now` minus `seconds`, as an ISO string: the cutoff of a retention period. */
export function minusSeconds(now: Date, seconds: number): string {
  return new Date(now.getTime() - seconds * 1000).toISOString();
}

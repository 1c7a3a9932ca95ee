import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config.js';
import { retentionPolicyOf, usedReferenceRule } from '../../../src/domain/lifecycle/policy.js';

// The retention settings (docs/lifecycle.md): durations `<n>s|m|h|d`, their defaults, and the
// policy the cleanup job and the status endpoint read from them.

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    return (err as ConfigError).problems;
  }
};

describe('the retention settings', () => {
  it('default: unused uploads 7 days, used references and videos forever, a cleanup every 10 minutes of at most 100 rows a batch and 30 s', () => {
    expect(loadConfig({}).retention).toEqual({
      unusedSeconds: 7 * 86_400,
      usedSeconds: null,
      videosSeconds: null,
      cleanupIntervalSeconds: 600,
      cleanupBatch: 100,
      cleanupBudgetSeconds: 30,
    });
    expect(usedReferenceRule(retentionPolicyOf(loadConfig({})))).toBe('forever');
  });

  it('reads each unit, and `forever` where a period may be endless', () => {
    const config = loadConfig({
      KEYFRAME_RETAIN_UNUSED: '90s',
      KEYFRAME_RETAIN_USED: '12h',
      KEYFRAME_RETAIN_VIDEOS: '30d',
      KEYFRAME_CLEANUP_INTERVAL: '5m',
      KEYFRAME_CLEANUP_BATCH: '7',
      KEYFRAME_CLEANUP_BUDGET: '2m',
    });
    expect(config.retention).toEqual({ unusedSeconds: 90, usedSeconds: 12 * 3600, videosSeconds: 30 * 86_400, cleanupIntervalSeconds: 300, cleanupBatch: 7, cleanupBudgetSeconds: 120 });
    expect(loadConfig({ KEYFRAME_RETAIN_UNUSED: 'forever', KEYFRAME_RETAIN_VIDEOS: 'FOREVER' }).retention).toMatchObject({ unusedSeconds: null, videosSeconds: null });
    expect(usedReferenceRule(retentionPolicyOf(loadConfig({ KEYFRAME_RETAIN_VIDEOS: '1d' })))).toBe('with-videos');
    expect(usedReferenceRule(retentionPolicyOf(loadConfig({ KEYFRAME_RETAIN_USED: '1d' })))).toBe('after-settled');
  });

  it('refuses what is not a duration, naming the setting', () => {
    expect(problemsOf({ KEYFRAME_RETAIN_UNUSED: '7' })).toEqual(['KEYFRAME_RETAIN_UNUSED must be a duration such as 90s, 10m, 12h or 7d (at most 315360000 s, or forever), got "7"']);
    expect(problemsOf({ KEYFRAME_RETAIN_USED: 'forever' })).toHaveLength(1);
    expect(problemsOf({ KEYFRAME_RETAIN_VIDEOS: '0d' })).toHaveLength(1);
    expect(problemsOf({ KEYFRAME_CLEANUP_INTERVAL: '2d' })).toEqual(['KEYFRAME_CLEANUP_INTERVAL must be a duration such as 90s, 10m, 12h or 7d (at most 86400 s), got "2d"']);
    expect(problemsOf({ KEYFRAME_CLEANUP_BATCH: '0' })).toHaveLength(1);
  });

  it('waits for a lapsed upload URL as long again as it lived, within 60 s and an hour', () => {
    expect(retentionPolicyOf(loadConfig({})).expiryGraceSeconds).toBe(900);
    expect(retentionPolicyOf(loadConfig({ KEYFRAME_UPLOAD_URL_TTL_SECONDS: '5' })).expiryGraceSeconds).toBe(60);
    expect(retentionPolicyOf(loadConfig({ KEYFRAME_UPLOAD_URL_TTL_SECONDS: '86400' })).expiryGraceSeconds).toBe(3600);
  });
});

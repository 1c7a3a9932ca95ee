import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

// Multi-node configuration is explicit (issue 12 item 5): a split role says how it shares what it needs.

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

const S3 = { KEYFRAME_STORAGE: 's3', S3_BUCKET: 'b', S3_ACCESS_KEY_ID: 'a', S3_SECRET_ACCESS_KEY: 's', S3_ENDPOINT: 'http://127.0.0.1:7480' };
const PG = { KEYFRAME_DATABASE_URL: 'postgres://keyframe@db.internal:5432/keyframe' };
const SHARED = { KEYFRAME_SIGNING_SECRET: 'x'.repeat(32), KEYFRAME_PUBLIC_URL: 'https://keyframe.example.com' };

describe('KEYFRAME_ROLE', () => {
  it('defaults to all (the embedded install) with a 30 s shutdown timeout, and nothing more is required', () => {
    const config = loadConfig({});
    expect(config.role).toBe('all');
    expect(config.shutdownTimeoutSeconds).toBe(30);
    // The embedded role on PostgreSQL and the disk store stays as it was: single-node, nothing required.
    expect(loadConfig(PG).role).toBe('all');
  });

  it('accepts api and worker on S3, and reads the shutdown timeout', () => {
    expect(loadConfig({ ...S3, KEYFRAME_ROLE: 'api' }).role).toBe('api');
    expect(loadConfig({ ...S3, ...PG, ...SHARED, KEYFRAME_ROLE: 'worker', KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS: '5' })).toMatchObject({
      role: 'worker',
      shutdownTimeoutSeconds: 5,
    });
  });

  it('refuses an unknown role and a bad shutdown timeout', () => {
    expect(problemsOf({ KEYFRAME_ROLE: 'scheduler' })).toEqual(['KEYFRAME_ROLE must be one of all, api, worker, got "scheduler"']);
    expect(problemsOf({ KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS: '0' })).toEqual([
      'KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS must be an integer from 1 to 3600, got "0"',
    ]);
  });

  for (const role of ['api', 'worker']) {
    it(`refuses KEYFRAME_ROLE=${role} on the disk store, saying it is single-node`, () => {
      const problems = problemsOf({ KEYFRAME_ROLE: role });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toContain(`KEYFRAME_ROLE=${role} needs KEYFRAME_STORAGE=s3`);
      expect(problems[0]).toContain('single-node');
      expect(problems[0]).toContain('keyframe serve');
    });

    it(`requires KEYFRAME_SIGNING_SECRET and KEYFRAME_PUBLIC_URL for KEYFRAME_ROLE=${role} on PostgreSQL, naming each missing one`, () => {
      const both = problemsOf({ ...S3, ...PG, KEYFRAME_ROLE: role });
      expect(both).toEqual([expect.stringContaining(`KEYFRAME_ROLE=${role} with KEYFRAME_DATABASE_URL requires KEYFRAME_SIGNING_SECRET and KEYFRAME_PUBLIC_URL`)]);
      const secret = problemsOf({ ...S3, ...PG, KEYFRAME_PUBLIC_URL: SHARED.KEYFRAME_PUBLIC_URL, KEYFRAME_ROLE: role });
      expect(secret).toEqual([expect.stringContaining('requires KEYFRAME_SIGNING_SECRET:')]);
      const url = problemsOf({ ...S3, ...PG, KEYFRAME_SIGNING_SECRET: SHARED.KEYFRAME_SIGNING_SECRET, KEYFRAME_ROLE: role });
      expect(url).toEqual([expect.stringContaining('requires KEYFRAME_PUBLIC_URL:')]);
      // The database URL's credentials never appear in the message.
      expect(both.join(' ')).not.toContain('db.internal');
      expect(loadConfig({ ...S3, ...PG, ...SHARED, KEYFRAME_ROLE: role }).role).toBe(role);
    });

    it(`lists the disk-store and the shared-settings problems together for KEYFRAME_ROLE=${role}`, () => {
      const problems = problemsOf({ ...PG, KEYFRAME_ROLE: role });
      expect(problems).toHaveLength(2);
    });
  }
});

import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

/** The problems loadConfig reports for `env`; fails the test when it does not throw. */
function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const config = loadConfig({});
    expect(config.host).toBe('127.0.0.1');
    expect(config.port).toBe(3000);
    expect(config.dataDir).toBe(path.resolve('./data'));
    expect(config.publicUrl).toBeNull();
    expect(config.uploadUrlTtlSeconds).toBe(900);
    expect(config.corsOrigins).toEqual([]);
    expect(config.signingSecret).toBeNull();
    expect(config.logLevel).toBe('info');
    expect(config.storage).toBe('disk');
    expect(config.s3).toBeNull();
  });

  it('reads every variable it documents', () => {
    const config = loadConfig({
      HOST: '::1',
      PORT: '0',
      KEYFRAME_DATA_DIR: '/tmp/kf-data',
      KEYFRAME_PUBLIC_URL: 'https://uploads.example.com/',
      KEYFRAME_UPLOAD_URL_TTL_SECONDS: '60',
      KEYFRAME_CORS_ORIGINS: ' https://a.example , https://b.example,',
      KEYFRAME_SIGNING_SECRET: 'x'.repeat(32),
      LOG_LEVEL: 'silent',
    });
    expect(config).toMatchObject({
      host: '::1',
      port: 0,
      dataDir: '/tmp/kf-data',
      publicUrl: 'https://uploads.example.com',
      uploadUrlTtlSeconds: 60,
      corsOrigins: ['https://a.example', 'https://b.example'],
      signingSecret: 'x'.repeat(32),
      logLevel: 'silent',
    });
  });

  it('treats empty and blank values as unset', () => {
    const config = loadConfig({ PORT: '', KEYFRAME_UPLOAD_URL_TTL_SECONDS: '  ', KEYFRAME_PUBLIC_URL: '' });
    expect(config.port).toBe(3000);
    expect(config.uploadUrlTtlSeconds).toBe(900);
    expect(config.publicUrl).toBeNull();
  });

  const badValues: [string, string, RegExp][] = [
    ['PORT', 'abc', /^PORT must be an integer from 0 to 65535, got "abc"$/],
    ['PORT', '65536', /^PORT must be an integer from 0 to 65535, got "65536"$/],
    ['PORT', '-1', /^PORT must be an integer/],
    ['PORT', '80.5', /^PORT must be an integer/],
    ['KEYFRAME_UPLOAD_URL_TTL_SECONDS', '0', /^KEYFRAME_UPLOAD_URL_TTL_SECONDS must be an integer from 1 to 604800, got "0"$/],
    ['KEYFRAME_UPLOAD_URL_TTL_SECONDS', '604801', /^KEYFRAME_UPLOAD_URL_TTL_SECONDS must be an integer/],
    ['KEYFRAME_UPLOAD_URL_TTL_SECONDS', '15m', /^KEYFRAME_UPLOAD_URL_TTL_SECONDS must be an integer/],
    ['KEYFRAME_PUBLIC_URL', 'not a url', /^KEYFRAME_PUBLIC_URL must be an http\(s\) URL, got "not a url"$/],
    ['KEYFRAME_PUBLIC_URL', 'ftp://files.example', /^KEYFRAME_PUBLIC_URL must be an http\(s\) URL/],
    ['KEYFRAME_SIGNING_SECRET', 'short', /^KEYFRAME_SIGNING_SECRET must be at least 32 characters$/],
    ['LOG_LEVEL', 'loud', /^LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"$/],
    ['KEYFRAME_STORAGE', 'gcs', /^KEYFRAME_STORAGE must be one of disk, s3, got "gcs"$/],
  ];

  it.each(badValues)('refuses %s=%s with one message naming it', (name, value, message) => {
    const problems = problemsOf({ [name]: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(message);
  });

  it('reports every bad value at once, one message each', () => {
    const problems = problemsOf({ PORT: 'x', LOG_LEVEL: 'loud', KEYFRAME_PUBLIC_URL: 'nope' });
    expect(problems).toHaveLength(3);
    expect(problems.join('\n')).toMatch(/PORT/);
    expect(problems.join('\n')).toMatch(/LOG_LEVEL/);
    expect(problems.join('\n')).toMatch(/KEYFRAME_PUBLIC_URL/);
  });

  it('the multipart sweep interval and S3_APPLY_LIFECYCLE (issue 13): 10 minutes and off by default', () => {
    expect(loadConfig({}).multipartSweepMinutes).toBe(10);
    expect(loadConfig({ KEYFRAME_MULTIPART_SWEEP_MINUTES: '2' }).multipartSweepMinutes).toBe(2);
    expect(problemsOf({ KEYFRAME_MULTIPART_SWEEP_MINUTES: '0' }).some((p) => p.startsWith('KEYFRAME_MULTIPART_SWEEP_MINUTES '))).toBe(true);
    const s3 = { KEYFRAME_STORAGE: 's3', S3_BUCKET: 'b', S3_ACCESS_KEY_ID: 'a', S3_SECRET_ACCESS_KEY: 's' };
    expect(loadConfig(s3).s3?.applyLifecycle).toBe(false);
    expect(loadConfig({ ...s3, S3_APPLY_LIFECYCLE: 'true' }).s3?.applyLifecycle).toBe(true);
  });

  it('names the missing S3 settings when the S3 store is chosen', () => {
    const problems = problemsOf({ KEYFRAME_STORAGE: 's3' });
    for (const name of ['S3_BUCKET', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY']) {
      expect(problems.filter((p) => p.startsWith(`${name} `))).toHaveLength(1);
    }
  });

  it('carries the problems in the error message, never a secret value it accepted', () => {
    const secret = 's'.repeat(40);
    let message = '';
    try {
      loadConfig({ KEYFRAME_SIGNING_SECRET: secret, PORT: 'nope' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toBe('invalid configuration: PORT must be an integer from 0 to 65535, got "nope"');
    expect(message).not.toContain(secret);
  });
});

// Multi-node configuration is explicit (issue 12 item 5): a split role says how it shares what it needs.
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

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

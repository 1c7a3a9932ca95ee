import { register as globalRegistry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { queueDepth } from '../../src/domain/generations/queue-depth.js';
import { PrometheusMetrics } from '../../src/metrics/prometheus.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';
import { parseExposition } from '../helpers/prometheus-text.js';
import { addUser, generationRow } from '../webhooks/support/deliveries.js';

/** The Prometheus adapter on its own: each instrument, the exposition format, the scrape-time queue depth. */

const scrape = async (metrics: PrometheusMetrics) => parseExposition(await metrics.render());

describe('the instruments of the Telemetry port', () => {
  it('counts presigns by family and route', async () => {
    const metrics = new PrometheusMetrics({ processMetrics: false });
    metrics.presignIssued('image', 'presign');
    metrics.presignIssued('image', 'presign');
    metrics.presignIssued('video', 'multipart');
    metrics.presignIssued('audio', 'params');
    const text = await scrape(metrics);
    expect(text.types.get('keyframe_presigns_total')).toBe('counter');
    expect(text.value('keyframe_presigns_total', { family: 'image', via: 'presign' })).toBe(2);
    expect(text.value('keyframe_presigns_total', { family: 'video', via: 'multipart' })).toBe(1);
    expect(text.value('keyframe_presigns_total', { family: 'audio', via: 'params' })).toBe(1);
  });

  it('counts settled uploads by state and family, and the bytes of verified ones', async () => {
    const metrics = new PrometheusMetrics({ processMetrics: false });
    metrics.uploadSettled('verified', 'image');
    metrics.uploadSettled('rejected', 'image');
    metrics.uploadSettled('expired', 'video');
    metrics.bytesIngested(1000, 'image');
    metrics.bytesIngested(234, 'image');
    // A zero (or negative) size counts nothing and never throws (prom-client refuses a negative increment).
    metrics.bytesIngested(0, 'audio');
    metrics.bytesIngested(-5, 'audio');
    const text = await scrape(metrics);
    expect(text.value('keyframe_uploads_settled_total', { state: 'verified', family: 'image' })).toBe(1);
    expect(text.value('keyframe_uploads_settled_total', { state: 'rejected', family: 'image' })).toBe(1);
    expect(text.value('keyframe_uploads_settled_total', { state: 'expired', family: 'video' })).toBe(1);
    expect(text.types.get('keyframe_ingested_bytes_total')).toBe('counter');
    expect(text.value('keyframe_ingested_bytes_total', { family: 'image' })).toBe(1234);
    expect(text.value('keyframe_ingested_bytes_total', { family: 'audio' })).toBeUndefined();
  });

  it('observes verification times by outcome in a histogram', async () => {
    const metrics = new PrometheusMetrics({ processMetrics: false });
    metrics.verificationFinished('verified', 0.2);
    metrics.verificationFinished('verified', 3);
    metrics.verificationFinished('rejected', 0.02);
    const text = await scrape(metrics);
    expect(text.types.get('keyframe_verification_duration_seconds')).toBe('histogram');
    expect(text.value('keyframe_verification_duration_seconds_count', { outcome: 'verified' })).toBe(2);
    expect(text.value('keyframe_verification_duration_seconds_sum', { outcome: 'verified' })).toBeCloseTo(3.2);
    expect(text.value('keyframe_verification_duration_seconds_bucket', { outcome: 'verified', le: '0.25' })).toBe(1);
    expect(text.value('keyframe_verification_duration_seconds_bucket', { outcome: 'verified', le: '+Inf' })).toBe(2);
    expect(text.value('keyframe_verification_duration_seconds_count', { outcome: 'rejected' })).toBe(1);
  });

  it('counts settled generations by status and model, with their time from creation', async () => {
    const metrics = new PrometheusMetrics({ processMetrics: false });
    metrics.generationSettled('completed', 'keyframe-local', 12);
    metrics.generationSettled('failed', 'keyframe-local', 700);
    // A clock stepped back: observed as 0, never negative.
    metrics.generationSettled('completed', 'keyframe-local', -1);
    const text = await scrape(metrics);
    expect(text.value('keyframe_generations_settled_total', { status: 'completed', model: 'keyframe-local' })).toBe(2);
    expect(text.value('keyframe_generations_settled_total', { status: 'failed', model: 'keyframe-local' })).toBe(1);
    expect(text.types.get('keyframe_generation_duration_seconds')).toBe('histogram');
    expect(text.value('keyframe_generation_duration_seconds_count', { status: 'completed', model: 'keyframe-local' })).toBe(2);
    expect(text.value('keyframe_generation_duration_seconds_sum', { status: 'completed', model: 'keyframe-local' })).toBe(12);
    expect(text.value('keyframe_generation_duration_seconds_bucket', { status: 'failed', model: 'keyframe-local', le: '600' })).toBe(0);
    expect(text.value('keyframe_generation_duration_seconds_bucket', { status: 'failed', model: 'keyframe-local', le: '1200' })).toBe(1);
  });

  it('counts webhook attempts by outcome', async () => {
    const metrics = new PrometheusMetrics({ processMetrics: false });
    metrics.webhookAttempt('failed');
    metrics.webhookAttempt('failed');
    metrics.webhookAttempt('gave_up');
    metrics.webhookAttempt('delivered');
    const text = await scrape(metrics);
    expect(text.value('keyframe_webhook_attempts_total', { outcome: 'failed' })).toBe(2);
    expect(text.value('keyframe_webhook_attempts_total', { outcome: 'gave_up' })).toBe(1);
    expect(text.value('keyframe_webhook_attempts_total', { outcome: 'delivered' })).toBe(1);
  });

  it('counts and times HTTP requests by method, route template and status', async () => {
    const metrics = new PrometheusMetrics({ processMetrics: false });
    metrics.observeRequest('GET', '/api/generations/:id', 200, 0.004);
    metrics.observeRequest('GET', '/api/generations/:id', 404, 0.002);
    metrics.observeRequest('GET', 'unmatched', 404, 0.001);
    const text = await scrape(metrics);
    expect(text.types.get('http_requests_total')).toBe('counter');
    expect(text.value('http_requests_total', { method: 'GET', route: '/api/generations/:id', status: '200' })).toBe(1);
    expect(text.value('http_requests_total', { method: 'GET', route: '/api/generations/:id', status: '404' })).toBe(1);
    expect(text.value('http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
    expect(text.types.get('http_request_duration_seconds')).toBe('histogram');
    expect(text.value('http_request_duration_seconds_count', { method: 'GET', route: '/api/generations/:id' })).toBe(2);
  });
});

describe('the registry and the exposition', () => {
  it('is one registry per instance, never prom-client global one', async () => {
    const a = new PrometheusMetrics({ processMetrics: false });
    const b = new PrometheusMetrics({ processMetrics: false });
    a.webhookAttempt('delivered');
    expect((await scrape(a)).value('keyframe_webhook_attempts_total', { outcome: 'delivered' })).toBe(1);
    expect((await scrape(b)).value('keyframe_webhook_attempts_total', { outcome: 'delivered' })).toBeUndefined();
    expect(await globalRegistry.getSingleMetric('keyframe_webhook_attempts_total')).toBeUndefined();
  });

  it('serves the text format 0.0.4 with HELP and TYPE for each family, and the process metrics', async () => {
    const metrics = new PrometheusMetrics();
    expect(metrics.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    const raw = await metrics.render();
    expect(raw).toMatch(/^# HELP keyframe_presigns_total .+\n# TYPE keyframe_presigns_total counter$/m);
    const text = parseExposition(raw);
    expect(text.types.get('process_cpu_user_seconds_total')).toBe('counter');
    expect(text.value('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(text.types.get('nodejs_eventloop_lag_seconds')).toBe('gauge');
    // Every family of Keyframe's own is there before anything happened.
    for (const name of [
      'keyframe_presigns_total',
      'keyframe_uploads_settled_total',
      'keyframe_ingested_bytes_total',
      'keyframe_verification_duration_seconds',
      'keyframe_generations_settled_total',
      'keyframe_generation_duration_seconds',
      'keyframe_webhook_attempts_total',
      'keyframe_queue_depth',
      'http_requests_total',
      'http_request_duration_seconds',
    ]) {
      expect(text.types.has(name), name).toBe(true);
    }
  });

  it('escapes label values so that the exposition stays parseable', async () => {
    const metrics = new PrometheusMetrics({ processMetrics: false });
    metrics.generationSettled('completed', 'a "quoted"\\model', 1);
    const text = await scrape(metrics);
    expect(text.value('keyframe_generations_settled_total', { status: 'completed', model: 'a "quoted"\\model' })).toBe(1);
  });
});

describe('the queue depth gauge', () => {
  it('is read at each scrape from the injected function', async () => {
    let depth = { queued: 3, running: 1 };
    const metrics = new PrometheusMetrics({ processMetrics: false, queueDepth: async () => depth });
    let text = await scrape(metrics);
    expect(text.types.get('keyframe_queue_depth')).toBe('gauge');
    expect(text.value('keyframe_queue_depth', { state: 'queued' })).toBe(3);
    expect(text.value('keyframe_queue_depth', { state: 'running' })).toBe(1);
    depth = { queued: 0, running: 2 };
    text = await scrape(metrics);
    expect(text.value('keyframe_queue_depth', { state: 'queued' })).toBe(0);
    expect(text.value('keyframe_queue_depth', { state: 'running' })).toBe(2);
  });

  it('is absent, and the scrape still answers, when the read fails', async () => {
    const errors: unknown[] = [];
    let fail = false;
    const metrics = new PrometheusMetrics({
      processMetrics: false,
      queueDepth: async () => {
        if (fail) throw new Error('database away');
        return { queued: 1, running: 1 };
      },
      onCollectError: (err) => errors.push(err),
    });
    metrics.webhookAttempt('delivered');
    expect((await scrape(metrics)).value('keyframe_queue_depth', { state: 'queued' })).toBe(1);
    fail = true;
    const text = await scrape(metrics);
    expect(text.value('keyframe_queue_depth', { state: 'queued' })).toBeUndefined();
    expect(text.value('keyframe_webhook_attempts_total', { outcome: 'delivered' })).toBe(1);
    expect(errors).toMatchObject([{ message: 'database away' }]);
  });
});

describe('queueDepth (the COUNT the gauge reads)', () => {
  let database: TestDatabase;
  let db: Db;

  beforeAll(async () => {
    database = await testDatabase('queue-depth');
    db = await database.open();
    await addUser(db, 'alice', 'whsec_a');
  });

  afterAll(async () => {
    await database?.dispose();
  });

  it('counts generating rows: not started is queued, started is running; settled ones are neither', async () => {
    expect(await queueDepth(db)).toEqual({ queued: 0, running: 0 });
    const now = new Date().toISOString();
    await db
      .insertInto('generations')
      .values([
        generationRow('gen_q1', 'alice', null),
        generationRow('gen_q2', 'alice', null),
        generationRow('gen_r1', 'alice', null, { started_at: now, attempts: 1, worker_id: 'w1', lease_expires_at: now }),
        generationRow('gen_c1', 'alice', null, { status: 'completed', started_at: now, completed_at: now, video_key: 'v' }),
        generationRow('gen_f1', 'alice', null, { status: 'failed', started_at: now, completed_at: now, error: 'e' }),
        generationRow('gen_f2', 'alice', null, { status: 'failed', completed_at: now, error: 'e' }),
      ])
      .execute();
    expect(await queueDepth(db)).toEqual({ queued: 2, running: 1 });
  });
});

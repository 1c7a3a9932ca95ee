import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MediaFamily } from '../domain/media-types.js';
import type { PresignVia, RetentionDeletion, Telemetry } from '../domain/telemetry.js';

/** Generations waiting for a worker and running on one, as the queue depth gauge reports them. */
export interface QueueDepth {
  queued: number;
  running: number;
}

export interface PrometheusMetricsOptions {
  /** Read at every scrape (src/domain/generations/queue-depth.ts); without it the gauge has no samples. */
  queueDepth?: () => Promise<QueueDepth>;
  /** Where a failed queue-depth read is reported; the scrape still answers, without the gauge's samples. */
  onCollectError?: (err: unknown) => void;
  /** prom-client's process metrics (CPU, memory, event loop, GC); default on. */
  processMetrics?: boolean;
}

/** Seconds a verification may take: milliseconds for an image, up to minutes for a 200 MB video from a slow store. */
const VERIFICATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Seconds from a generation's creation to its settling: queueing included, up to the job time limit and beyond. */
const GENERATION_BUCKETS = [1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600];

/**
 * The process's metrics in the Prometheus format: the domain's Telemetry, the HTTP requests, the
 * queue depth (read at scrape time) and prom-client's process metrics, all in one Registry of
 * this object's own (never prom-client's global one), made by the composition root
 * (src/start/shared.ts). Labels are bounded: a family, a state, a model of the registry, a route
 * template, a status code.
 */
export class PrometheusMetrics implements Telemetry {
  readonly registry = new Registry();
  private readonly presigns: Counter<'family' | 'via'>;
  private readonly uploads: Counter<'state' | 'family'>;
  private readonly ingested: Counter<'family'>;
  private readonly verification: Histogram<'outcome'>;
  private readonly generations: Counter<'status' | 'model'>;
  private readonly generationSeconds: Histogram<'status' | 'model'>;
  private readonly webhooks: Counter<'outcome'>;
  private readonly deletions: Counter<'what'>;
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly requestSeconds: Histogram<'method' | 'route'>;

  constructor(options: PrometheusMetricsOptions = {}) {
    const registers = [this.registry];
    this.presigns = new Counter({
      name: 'keyframe_presigns_total',
      help: 'Upload URLs issued: via presign, multipart (a multipart create) or params (Uppy single PUT)',
      labelNames: ['family', 'via'],
      registers,
    });
    this.uploads = new Counter({
      name: 'keyframe_uploads_settled_total',
      help: 'Uploads settled for good: verified, rejected, or expired (an upload URL or a multipart upload whose lifetime ended unused)',
      labelNames: ['state', 'family'],
      registers,
    });
    this.ingested = new Counter({ name: 'keyframe_ingested_bytes_total', help: 'Bytes of uploads that verified', labelNames: ['family'], registers });
    this.verification = new Histogram({
      name: 'keyframe_verification_duration_seconds',
      help: 'Time one verification took to come to a verdict (HEAD, ranged reads, private copy, probe)',
      labelNames: ['outcome'],
      buckets: VERIFICATION_BUCKETS,
      registers,
    });
    this.generations = new Counter({
      name: 'keyframe_generations_settled_total',
      help: 'Generations settled, by outcome and model',
      labelNames: ['status', 'model'],
      registers,
    });
    this.generationSeconds = new Histogram({
      name: 'keyframe_generation_duration_seconds',
      help: 'Seconds from a generation being created to it settling (queueing included)',
      labelNames: ['status', 'model'],
      buckets: GENERATION_BUCKETS,
      registers,
    });
    this.webhooks = new Counter({
      name: 'keyframe_webhook_attempts_total',
      help: 'Webhook attempts: delivered, failed (retried later) or gave_up (the last attempt failed)',
      labelNames: ['outcome'],
      registers,
    });
    this.deletions = new Counter({
      name: 'keyframe_retention_deletions_total',
      help: 'Objects the retention policy removed: unused_upload, used_reference or video (docs/lifecycle.md)',
      labelNames: ['what'],
      registers,
    });
    this.requests = new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests answered, by method, route template (unmatched: no route) and status code',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Time to answer an HTTP request, by method and route template',
      labelNames: ['method', 'route'],
      registers,
    });
    const queueDepth = options.queueDepth;
    const onCollectError = options.onCollectError;
    new Gauge({
      name: 'keyframe_queue_depth',
      help: 'Generations queued (waiting for a worker) and running, read from the database at scrape time',
      labelNames: ['state'],
      registers,
      async collect() {
        if (!queueDepth) return;
        try {
          const depth = await queueDepth();
          this.set({ state: 'queued' }, depth.queued);
          this.set({ state: 'running' }, depth.running);
        } catch (err) {
          // A database that does not answer must not fail the whole scrape: the gauge is absent instead.
          this.reset();
          onCollectError?.(err);
        }
      },
    });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** The content type of `render()`'s text (the Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in the text exposition format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** One answered HTTP request; `route` is the route template (or `unmatched`), never the path. */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.requests.inc({ method, route, status: String(status) });
    this.requestSeconds.observe({ method, route }, seconds);
  }

  presignIssued(family: MediaFamily, via: PresignVia): void {
    this.presigns.inc({ family, via });
  }

  uploadSettled(state: 'verified' | 'rejected' | 'expired', family: MediaFamily): void {
    this.uploads.inc({ state, family });
  }

  bytesIngested(bytes: number, family: MediaFamily): void {
    if (bytes > 0) this.ingested.inc({ family }, bytes);
  }

  verificationFinished(outcome: 'verified' | 'rejected', seconds: number): void {
    this.verification.observe({ outcome }, seconds);
  }

  generationSettled(status: 'completed' | 'failed', model: string, secondsFromCreate: number): void {
    this.generations.inc({ status, model });
    // A clock that stepped back must not make a negative observation.
    this.generationSeconds.observe({ status, model }, Math.max(0, secondsFromCreate));
  }

  webhookAttempt(outcome: 'delivered' | 'failed' | 'gave_up'): void {
    this.webhooks.inc({ outcome });
  }

  retentionDeleted(what: RetentionDeletion): void {
    this.deletions.inc({ what });
  }
}

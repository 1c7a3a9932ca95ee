import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { sql, type ExpressionBuilder } from 'kysely';
import { changeFeedOf } from '../db/change-feed.js';
import type { Db } from '../db/database.js';
import { dialectOf } from '../db/dialect.js';
import type { Database } from '../db/schema.js';
import { statusBody } from '../domain/generations/status.js';
import type { WebhookDispatch } from '../domain/generations/webhooks.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { SendOutcome, WebhookSender } from './webhook-sender.js';
import { CoalescingPump } from '../coalescing-pump.js';
import { NO_TELEMETRY, type Telemetry } from '../domain/telemetry.js';

/** The channel `queued()` NOTIFYs on PostgreSQL; every dispatcher LISTENs to it through the database's change feed. */
export const WEBHOOKS_CHANNEL = 'keyframe_webhooks';

export const DEFAULT_MAX_ATTEMPTS = 5;
export const DEFAULT_FIRST_RETRY_MS = 2_000;
export const DEFAULT_CONCURRENCY = 4;
export const DEFAULT_POLL_MS = 1_000;
/** How long a claim holds a delivery; it must outlast an attempt, which it is never renewed during. */
export const DEFAULT_LEASE_MS = 30_000;

export interface WebhookDispatcherOptions {
  /** Where failed attempts are reported: the target's origin and the delivery id, never the URL's path or query. */
  log: (message: string, details: Record<string, unknown>) => void;
  /** Attempts per delivery, the first included (DEFAULT_MAX_ATTEMPTS). */
  maxAttempts?: number;
  /** Wait before the first retry, doubled after each (DEFAULT_FIRST_RETRY_MS). */
  firstRetryMs?: number;
  /** Deliveries sent at once by this dispatcher (DEFAULT_CONCURRENCY). */
  concurrency?: number;
  /** How often an idle dispatcher looks for due deliveries (DEFAULT_POLL_MS); PostgreSQL also hears NOTIFY. */
  pollMs?: number;
  /** How long a claim holds a delivery (DEFAULT_LEASE_MS); longer than the sender's attempt time limit. */
  leaseMs?: number;
  /** The id this dispatcher writes on the deliveries it claims; unique by default (host, pid, random). */
  workerId?: string;
}

/** A delivery this dispatcher claimed, as the claim returned it. */
interface Claimed {
  id: string;
  generation_id: string;
  attempts: number;
}

/**
 * Sends the `webhook_deliveries` rows, in whichever process runs it, safe for
 * several on one database. A delivery is claimed with one conditional UPDATE
 * that writes this dispatcher's `worker_id` and a lease (`lease_expires_at`):
 * a pending delivery is claimable once due (`next_attempt_at`) while nobody
 * holds it or its holder's lease lapsed, so a delivery of a dispatcher that
 * died is sent by another. Each attempt builds the body when it is sent (a
 * fresh presigned `video_url`) and signs it with the user's current secret;
 * neither is stored. The outcome is recorded only while the claim is still
 * this dispatcher's: 2xx delivers, anything else schedules the next attempt
 * with exponential backoff, or fails the delivery after `maxAttempts`.
 *
 * Wake-up: `queued()` in this process, `NOTIFY keyframe_webhooks` on
 * PostgreSQL, a finished attempt, and a poll every `pollMs` (how retries fall
 * due, and how SQLite's other processes learn of new deliveries).
 */
export class WebhookDispatcher implements WebhookDispatch {
  readonly workerId: string;
  private readonly maxAttempts: number;
  private readonly firstRetryMs: number;
  private readonly concurrency: number;
  private readonly pollMs: number;
  private readonly leaseMs: number;
  private readonly postgres: boolean;
  private readonly inFlight = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private started = false;
  private readonly pumper = new CoalescingPump(() => this.pump(), () => !this.stopped);
  private poller: NodeJS.Timeout | null = null;
  private unlisten: (() => void) | null = null;
  private stopping: Promise<void> | null = null;
  /** Counts attempts by outcome (src/domain/telemetry.ts). */
  private readonly telemetry: Telemetry;

  constructor(
    private readonly db: Db,
    private readonly store: ObjectStore,
    private readonly sender: WebhookSender,
    private readonly options: WebhookDispatcherOptions & { telemetry?: Telemetry },
  ) {
    this.telemetry = options.telemetry ?? NO_TELEMETRY;
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.firstRetryMs = options.firstRetryMs ?? DEFAULT_FIRST_RETRY_MS;
    this.concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    this.pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.postgres = dialectOf(db) === 'postgres';
    // A claim that lapsed mid-attempt would let another dispatcher send the same delivery alongside.
    if (this.leaseMs <= sender.attemptTimeoutMs) throw new Error('a webhook claim (leaseMs) must outlast an attempt (attemptTimeoutMs)');
  }

  /** Starts claiming due deliveries; once stopped, a dispatcher stays stopped. */
  start(): void {
    if (this.started || this.stopping) return;
    this.started = true;
    this.unlisten = changeFeedOf(this.db).listen(WEBHOOKS_CHANNEL, () => this.wake());
    // Ref'd on purpose, as the job queue's: a started dispatcher keeps its process alive until stop().
    this.poller = setInterval(() => this.wake(), this.pollMs);
    this.wake();
  }

  async queued(): Promise<void> {
    this.wake();
    await this.announce();
  }

  /**
   * Stops claiming, aborts the attempts in flight and hands their deliveries
   * back (no holder, no lease, the attempt not counted), so another dispatcher
   * sends them at once; other processes are told (NOTIFY). Resolves once all of
   * it is done. Idempotent; a dispatcher never started has nothing to stop.
   */
  stop(): Promise<void> {
    return (this.stopping ??= this.halt());
  }

  private async halt(): Promise<void> {
    if (!this.started) return;
    if (this.poller) clearInterval(this.poller);
    this.poller = null;
    this.unlisten?.();
    this.unlisten = null;
    // A claim in flight finishes and launches what it claimed; those are aborted with the rest.
    await this.pumper.idle();
    const attempts = [...this.inFlight.values()];
    for (const { controller } of attempts) controller.abort(new Error('dispatcher stopping'));
    await Promise.allSettled(attempts.map((a) => a.done));
    if (attempts.length > 0) await this.announce();
  }

  private get stopped(): boolean {
    return this.stopping !== null || !this.started;
  }

  /** Tells dispatchers in other processes there is something to send (PostgreSQL; elsewhere they poll). Never throws. */
  private async announce(): Promise<void> {
    if (!this.postgres) return;
    try {
      await sql`select pg_notify(${WEBHOOKS_CHANNEL}, '')`.execute(this.db);
    } catch (err) {
      // The rows are there all the same; dispatchers find them by polling.
      this.options.log('webhook dispatcher error', { err, during: 'notify' });
    }
  }

  private wake(): void {
    this.pumper.wake();
  }

  private async pump(): Promise<void> {
    while (!this.stopped && this.inFlight.size < this.concurrency) {
      const claimed = await this.claim(this.concurrency - this.inFlight.size).catch((err) => {
        this.options.log('webhook dispatcher error', { err, during: 'claim' });
        return [];
      });
      if (claimed.length === 0) return;
      for (const delivery of claimed) this.launch(delivery);
    }
  }

  /**
   * Claims up to `n` due deliveries: one SELECT on the index range of due
   * pending rows (`webhook_deliveries_due`), then one conditional UPDATE per
   * row, which only one of several dispatchers wins. This dispatcher's own
   * attempts are left out, whatever their lease says.
   */
  private async claim(n: number): Promise<Claimed[]> {
    const claimable = claimableAt(iso(Date.now()));
    let due = this.db.selectFrom('webhook_deliveries').select('id').where(claimable);
    if (this.inFlight.size > 0) due = due.where('id', 'not in', [...this.inFlight.keys()]);
    const candidates = await due.orderBy('next_attempt_at').orderBy('id').limit(n).execute();
    const claimed: Claimed[] = [];
    for (const { id } of candidates) {
      const row = await this.db
        .updateTable('webhook_deliveries')
        .set({ worker_id: this.workerId, lease_expires_at: iso(Date.now() + this.leaseMs) })
        .where('id', '=', id)
        .where(claimable)
        .returning(['id', 'generation_id', 'attempts'])
        .executeTakeFirst();
      if (row) claimed.push(row);
    }
    return claimed;
  }

  private launch(delivery: Claimed): void {
    const controller = new AbortController();
    const done = this.attempt(delivery, controller.signal)
      // A database error recording the outcome: the claim lapses and the delivery is attempted again.
      .catch((err) => this.options.log('webhook dispatcher error', { err, deliveryId: delivery.id }))
      .finally(() => {
        this.inFlight.delete(delivery.id);
        this.wake();
      });
    this.inFlight.set(delivery.id, { controller, done });
  }

  /** One attempt: build, sign and send; then record the outcome, or hand the delivery back when stopped. */
  private async attempt(delivery: Claimed, signal: AbortSignal): Promise<void> {
    let origin: string | null = null;
    let outcome: SendOutcome;
    try {
      const { webhook_secret: secret, ...generation } = await this.db
        .selectFrom('generations')
        .innerJoin('users', 'users.id', 'generations.user_id')
        .selectAll('generations')
        .select('users.webhook_secret')
        .where('generations.id', '=', delivery.generation_id)
        .executeTakeFirstOrThrow();
      // A delivery is only queued for a generation with a webhook_url.
      const url = new URL(generation.webhook_url ?? '');
      origin = url.origin;
      const payload = JSON.stringify(await statusBody(generation, this.store));
      outcome = await this.sender.send(url.href, secret, payload, delivery.id, signal);
    } catch (err) {
      // Only a code: a message could quote the URL.
      outcome = { error: (err as NodeJS.ErrnoException).code ?? (err as Error).name ?? 'Error' };
    }
    if (signal.aborted && 'error' in outcome) return this.release(delivery.id);
    await this.record(delivery, outcome, origin);
  }

  private async record(delivery: Claimed, outcome: SendOutcome, origin: string | null): Promise<void> {
    const now = Date.now();
    const attempts = delivery.attempts + 1;
    const delivered = 'status' in outcome && outcome.status >= 200 && outcome.status < 300;
    const failure = 'status' in outcome ? `HTTP ${outcome.status}` : outcome.error;
    const gaveUp = !delivered && attempts >= this.maxAttempts;
    const changes = delivered
      ? { state: 'delivered' as const, delivered_at: iso(now), last_error: null }
      : gaveUp
        ? { state: 'failed' as const, last_error: failure }
        : { last_error: failure, next_attempt_at: iso(now + this.firstRetryMs * 2 ** (attempts - 1)) };
    // Only while the claim is ours: a dispatcher that took over a lapsed claim records its own attempt.
    const result = await this.db
      .updateTable('webhook_deliveries')
      .set({ ...changes, attempts, worker_id: null, lease_expires_at: null })
      .where('id', '=', delivery.id)
      .where('worker_id', '=', this.workerId)
      .where('state', '=', 'pending')
      .executeTakeFirst();
    if (result.numUpdatedRows === 1n) this.telemetry.webhookAttempt(delivered ? 'delivered' : gaveUp ? 'gave_up' : 'failed');
    if (delivered) return;
    const details = { target: origin, deliveryId: delivery.id, attempt: attempts, failure };
    this.options.log(gaveUp ? 'webhook delivery gave up' : 'webhook delivery failed; will retry', details);
  }

  /** Hands a delivery back unsent and its attempt uncounted (only if the claim is still ours). */
  private async release(id: string): Promise<void> {
    await this.db
      .updateTable('webhook_deliveries')
      .set({ worker_id: null, lease_expires_at: null })
      .where('id', '=', id)
      .where('worker_id', '=', this.workerId)
      .where('state', '=', 'pending')
      .execute();
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

/** A delivery anyone may claim at `now`: pending, due, and held by nobody (or by a lapsed claim). */
const claimableAt = (now: string) => (eb: ExpressionBuilder<Database, 'webhook_deliveries'>) =>
  eb.and([
    eb('state', '=', 'pending'),
    eb('next_attempt_at', '<=', now),
    eb.or([eb('worker_id', 'is', null), eb('lease_expires_at', '<', now)]),
  ]);

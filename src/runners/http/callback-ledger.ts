import { sql } from 'kysely';
import { changeFeedOf } from '../../db/change-feed.js';
import type { Db } from '../../db/database.js';
import { dialectOf } from '../../db/dialect.js';
import type { CallbackOutcome, RunnerCallbacks } from '../../domain/generations/runner.js';
import { callbackKey, callbackSecret, secretDigest } from './callback-secret.js';
import { callbackSignatureValid } from './callback-signature.js';

/** What a model worker reported for a run, as the ledger stores it (`runner_callbacks.outcome`). */
export type RunOutcome = { ok: true } | { ok: false; error: string };

/** A run waiting for its callback, from `CallbackLedger.open`. */
export interface AwaitedCallback {
  /** The secret the model worker signs its callback with (this run only). */
  readonly secret: string;
  /** Resolves with the accepted callback's outcome; rejects with `signal.reason` once `signal` aborts. */
  outcome(signal: AbortSignal): Promise<RunOutcome>;
  /** Forgets the run (its row, if no later run replaced it). Never throws: a failure is logged. */
  close(): Promise<void>;
}

export interface CallbackLedgerOptions {
  /** Where database failures and misconfiguration are reported. */
  log?: (err: unknown, generationId: string) => void;
  /** How often a waiting run re-reads its row (DEFAULT_POLL_MS). */
  pollMs?: number;
}

/** Re-reads of a waiting run: SQLite's only way to hear of a callback another process accepted, and PostgreSQL's when a notification is lost. */
export const DEFAULT_POLL_MS = 500;
/** The channel an accepting node NOTIFYs on PostgreSQL; the payload is empty, every waiting run re-reads its row. */
export const CALLBACKS_CHANNEL = 'keyframe_callbacks';

/**
 * The `http` runner's pending callbacks, kept in the database (`runner_callbacks`)
 * so that the callback of a job run by any worker can be accepted by any API node.
 *
 * A run's row holds its run id and the SHA-256 of its secret, which is derived
 * from the signing secret (src/runners/http/callback-secret.ts), never stored.
 * Accepting is one conditional UPDATE that writes the outcome while none is
 * written yet, so the secret is single-use even between nodes: a replay, or
 * the loser of two concurrent callbacks, finds no job waiting.
 *
 * The waiting run hears of it at once when the callback was accepted in its
 * own process, on PostgreSQL by `NOTIFY keyframe_callbacks` (the database's
 * change feed), and otherwise by re-reading its row every `pollMs`.
 */
export class CallbackLedger implements RunnerCallbacks {
  private readonly key: Buffer;
  private readonly pollMs: number;
  private readonly postgres: boolean;
  /** Wake-ups of the runs of this process waiting for a callback, by generation id. */
  private readonly waiting = new Map<string, Set<() => void>>();

  constructor(
    private readonly db: Db,
    signingSecret: string,
    private readonly options: CallbackLedgerOptions = {},
  ) {
    this.key = callbackKey(signingSecret);
    this.pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    this.postgres = dialectOf(db) === 'postgres';
  }

  /** Records that run `runId` of a generation awaits its callback (replacing an earlier run's record); call it before handing the job out. */
  async open(generationId: string, runId: string): Promise<AwaitedCallback> {
    const secret = callbackSecret(this.key, generationId, runId);
    const row = { run_id: runId, secret_sha256: secretDigest(secret), outcome: null, created_at: new Date().toISOString(), settled_at: null };
    await this.db
      .insertInto('runner_callbacks')
      .values({ generation_id: generationId, ...row })
      .onConflict((oc) => oc.column('generation_id').doUpdateSet(row))
      .execute();
    return {
      secret,
      outcome: (signal) => this.outcomeOf(generationId, runId, signal),
      close: async () => {
        await this.db
          .deleteFrom('runner_callbacks')
          .where('generation_id', '=', generationId)
          .where('run_id', '=', runId)
          .execute()
          .catch((err: unknown) => this.options.log?.(err, generationId));
      },
    };
  }

  async accept(generationId: string, rawBody: string, signature: string | undefined): Promise<CallbackOutcome> {
    // A job no longer generating (failed by recovery after its worker died) awaits nothing, even if its row remains.
    const row = await this.db
      .selectFrom('runner_callbacks')
      .innerJoin('generations', 'generations.id', 'runner_callbacks.generation_id')
      .select(['runner_callbacks.run_id', 'runner_callbacks.secret_sha256', 'runner_callbacks.outcome'])
      .where('runner_callbacks.generation_id', '=', generationId)
      .where('generations.status', '=', 'generating')
      .executeTakeFirst();
    if (!row || row.outcome !== null) return 'unknown_job';
    const secret = callbackSecret(this.key, generationId, row.run_id);
    // The digest is no secret (it is in the database); it only tells a wrong signing secret from a forged signature.
    if (secretDigest(secret) !== row.secret_sha256) {
      this.options.log?.(
        new Error(
          'cannot verify a runner callback: this node derives another callback secret than the node that ran the job; ' +
            'every node of a cluster needs the same KEYFRAME_SIGNING_SECRET',
        ),
        generationId,
      );
      return 'unverifiable';
    }
    if (!callbackSignatureValid(secret, rawBody, signature)) return 'bad_signature';
    const outcome = parseCallback(rawBody);
    if (outcome === 'malformed') return 'malformed';
    const settled = await this.db
      .updateTable('runner_callbacks')
      .set({ outcome: JSON.stringify(outcome), settled_at: new Date().toISOString() })
      .where('generation_id', '=', generationId)
      .where('run_id', '=', row.run_id)
      .where('outcome', 'is', null)
      .executeTakeFirst();
    if (settled.numUpdatedRows === 0n) return 'unknown_job';
    for (const wake of this.waiting.get(generationId) ?? []) wake();
    await this.announce(generationId);
    return 'accepted';
  }

  /** Waits until the row of this run holds an outcome: woken in process, by NOTIFY, or by the next poll. */
  private async outcomeOf(generationId: string, runId: string, signal: AbortSignal): Promise<RunOutcome> {
    let woken = false;
    let resolveNap: (() => void) | null = null;
    const wake = () => {
      woken = true;
      resolveNap?.();
    };
    const local = this.waiting.get(generationId) ?? new Set();
    this.waiting.set(generationId, local);
    local.add(wake);
    const unlisten = this.listen(wake);
    signal.addEventListener('abort', wake, { once: true });
    try {
      for (;;) {
        if (signal.aborted) throw signal.reason;
        woken = false;
        const outcome = await this.readOutcome(generationId, runId);
        if (outcome) return outcome;
        if (woken) continue;
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          resolveNap = resolve;
          timer = setTimeout(resolve, this.pollMs);
        });
        clearTimeout(timer);
        resolveNap = null;
      }
    } finally {
      signal.removeEventListener('abort', wake);
      unlisten();
      local.delete(wake);
      if (local.size === 0 && this.waiting.get(generationId) === local) this.waiting.delete(generationId);
    }
  }

  /**
   * The outcome of this run once written, else null. A row of another run (a
   * later claim of the job after this run's lease was lost) is not this run's
   * answer: the queue aborts this run. A failed read is logged and retried.
   */
  private async readOutcome(generationId: string, runId: string): Promise<RunOutcome | null> {
    try {
      const row = await this.db.selectFrom('runner_callbacks').select('outcome').where('generation_id', '=', generationId).where('run_id', '=', runId).executeTakeFirst();
      return row?.outcome ? (JSON.parse(row.outcome) as RunOutcome) : null;
    } catch (err) {
      this.options.log?.(err, generationId);
      return null;
    }
  }

  /** Calls `wake` on every NOTIFY keyframe_callbacks (PostgreSQL's change feed); returns the function that stops it. */
  private listen(wake: () => void): () => void {
    if (!this.postgres) return () => {};
    return changeFeedOf(this.db).listen(CALLBACKS_CHANNEL, wake);
  }

  /** Tells waiting runs in other processes to re-read (PostgreSQL). Never throws: they poll anyway. */
  private async announce(generationId: string): Promise<void> {
    if (!this.postgres) return;
    try {
      await sql`select pg_notify(${CALLBACKS_CHANNEL}, '')`.execute(this.db);
    } catch (err) {
      this.options.log?.(err, generationId);
    }
  }
}

/** The outcome a callback body reports: `{"status":"completed"}` or `{"status":"failed","error":"…"}`. */
function parseCallback(rawBody: string): RunOutcome | 'malformed' {
  let parsed: { status?: unknown; error?: unknown };
  try {
    parsed = JSON.parse(rawBody) as typeof parsed;
  } catch {
    return 'malformed';
  }
  if (parsed === null || typeof parsed !== 'object') return 'malformed';
  if (parsed.status === 'completed') return { ok: true };
  if (parsed.status !== 'failed') return 'malformed';
  const error = typeof parsed.error === 'string' && parsed.error.trim() !== '' ? parsed.error.trim().slice(0, 500) : 'the model worker gave no reason';
  return { ok: false, error: `Generation failed: ${error}` };
}

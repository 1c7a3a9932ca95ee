import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Db } from '../../../src/db/database.js';
import type { GenerationsTable, WebhookDeliveriesTable } from '../../../src/db/schema.js';
import { pendingDelivery } from '../../../src/domain/generations/webhooks.js';
import { DiskStore } from '../../../src/storage/disk/disk-store.js';
import { WebhookDispatcher, type WebhookDispatcherOptions } from '../../../src/webhooks/webhook-dispatcher.js';
import { WebhookSender } from '../../../src/webhooks/webhook-sender.js';
import { signWebhook } from '../../../src/webhooks/signature.js';

/** One request a receiver got. */
export interface ReceivedHook {
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** What a receiver does with its n-th request (0-based): answer with a status, or hold it unanswered until closed. */
export type Answer = (hook: ReceivedHook, n: number) => number | 'hold' | Promise<number | 'hold'>;

export interface Receiver {
  url: string;
  /** Every request, in arrival order, with what it was answered (null: held). */
  requests: (ReceivedHook & { answered: number | null })[];
  close(): Promise<void>;
}

/** A real webhook receiver on 127.0.0.1 (an ephemeral port), answering as `answer` says. */
export async function startReceiver(answer: Answer): Promise<Receiver> {
  const requests: Receiver['requests'] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', async () => {
      const entry = { headers: req.headers, body, answered: null as number | null };
      requests.push(entry);
      const status = await answer(entry, requests.length - 1);
      if (status === 'hold') return;
      entry.answered = status;
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/keyframe?token=abc`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Whether `hook` carries a valid signature by `secret`. */
export function signedBy(secret: string, hook: ReceivedHook): boolean {
  return hook.headers['x-keyframe-signature'] === signWebhook(secret, Number(hook.headers['x-keyframe-timestamp']), hook.body);
}

/** A user with `secret` as their webhook secret. */
export async function addUser(db: Db, id: string, secret: string): Promise<void> {
  await db.insertInto('users').values({ id, webhook_secret: secret, created_at: new Date().toISOString() }).execute();
}

/** A generation settled as `status` (completed: with a video key) with `webhookUrl`. */
export async function settledGeneration(db: Db, id: string, userId: string, webhookUrl: string, status: 'completed' | 'failed' = 'failed'): Promise<void> {
  const now = new Date().toISOString();
  await db.insertInto('generations').values(generationRow(id, userId, webhookUrl, { status, completed_at: now, ...(status === 'completed' ? { video_key: `videos/${id}.mp4` } : { error: 'Generation failed: test' }) })).execute();
}

/** A generation row as the tests insert it, `generating` and queued unless `changes` say otherwise. */
export function generationRow(id: string, userId: string, webhookUrl: string | null, changes: Partial<GenerationsTable> = {}): GenerationsTable {
  return {
    id,
    user_id: userId,
    model_name: 'keyframe-local',
    prompt: 'p',
    params: '{}',
    template_id: null,
    webhook_url: webhookUrl,
    status: 'generating',
    error: null,
    attempts: 0,
    video_key: null,
    created_at: new Date().toISOString(),
    started_at: null,
    completed_at: null,
    worker_id: null,
    lease_expires_at: null,
    video_delete_marked_at: null,
    video_deleted_at: null,
    ...changes,
  };
}

/** A pending delivery of `generationId`, due now, as the worker writes it; `changes` set a claim or another state. Returns its id. */
export async function addDelivery(db: Db, generationId: string, changes: Partial<WebhookDeliveriesTable> = {}): Promise<string> {
  const row = { ...pendingDelivery(generationId, new Date().toISOString()), ...changes };
  await db.insertInto('webhook_deliveries').values(row).execute();
  return row.id;
}

export const deliveryRow = (db: Db, id: string) => db.selectFrom('webhook_deliveries').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

/** A disk store in `dir`: statusBody presigns completed videos' URLs with it (nothing is stored). */
export const testStore = (dir: string) => new DiskStore({ root: dir, publicUrl: 'http://127.0.0.1:9', signingSecret: 'webhook-test-signing-secret' });

/** What a dispatcher logged. */
export type LogLines = { message: string; details: Record<string, unknown> }[];

/**
 * A dispatcher with test timings (polls every 50 ms, retries after 20, 40, … ms,
 * 2 s per attempt, 5 s claims), allowed to reach loopback unless `allowPrivate` is false.
 */
export function testDispatcher(
  db: Db,
  dir: string,
  options: Partial<WebhookDispatcherOptions> & { allowPrivate?: boolean; attemptTimeoutMs?: number } = {},
): { dispatcher: WebhookDispatcher; logged: LogLines } {
  const logged: LogLines = [];
  const { allowPrivate = true, attemptTimeoutMs = 2_000, ...rest } = options;
  const sender = new WebhookSender({ allowPrivate, attemptTimeoutMs });
  const dispatcher = new WebhookDispatcher(db, testStore(dir), sender, {
    log: (message, details) => logged.push({ message, details }),
    pollMs: 50,
    firstRetryMs: 20,
    leaseMs: 5_000,
    ...rest,
  });
  return { dispatcher, logged };
}

/** Waits (every 25 ms, at most `tries` times) for `condition`. */
export async function until(condition: () => Promise<boolean> | boolean, what: string, tries = 400): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

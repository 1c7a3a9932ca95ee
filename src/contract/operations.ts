import { Type, type Static } from '@sinclair/typebox';

/** Ours: GET /healthz, liveness: the process answers. */
export const Health = Type.Object({ ok: Type.Literal(true) }, { $id: 'Health' });
export type Health = Static<typeof Health>;

/** One dependency's check: how long it took, and on failure `timeout` or `error` (the cause is logged, never answered). */
export const ReadinessCheck = Type.Object({
  ok: Type.Boolean(),
  ms: Type.Number(),
  error: Type.Optional(Type.Union([Type.Literal('timeout'), Type.Literal('error')])),
});
export type ReadinessCheck = Static<typeof ReadinessCheck>;

/** Ours: GET /readyz when ready: every check passed (the database and the store). */
export const Ready = Type.Object(
  { ok: Type.Literal(true), checks: Type.Record(Type.String(), ReadinessCheck, { description: 'By name: database, store' }) },
  { $id: 'Ready' },
);
export type Ready = Static<typeof Ready>;

/** Ours: GET /readyz when not ready (503): the error envelope, with the checks that failed. */
export const NotReady = Type.Object(
  {
    ok: Type.Literal(false),
    error: Type.Literal('not_ready'),
    message: Type.String(),
    failed: Type.Array(Type.String(), { description: 'Names of the checks that failed' }),
    checks: Type.Record(Type.String(), ReadinessCheck),
  },
  { $id: 'NotReady' },
);
export type NotReady = Static<typeof NotReady>;

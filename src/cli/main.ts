import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, loadConfig, ROLES, type Config } from '../config.js';
import { databaseTargetOf, openDatabase } from '../db/database.js';
import { postgresAddress } from '../db/postgres.js';
import { ApiKeys } from '../domain/api-keys.js';
import { ApiError } from '../domain/errors.js';
import { DISK_RESERVATION_GRACE_MS } from '../domain/usage/upload-usage.js';
import { readUserUsage } from '../domain/usage/user-usage.js';
import { startRole } from '../start/index.js';
import { createLogger } from '../start/shared.js';
import { watchShutdownSignals } from '../start/shutdown.js';

/** A mistake in how the command was called: exit code 2. */
class UsageError extends Error {}

const USAGE = `usage: keyframe <command>

  serve [--role all|api|worker]           start the server (applies pending migrations first): API and
                                          worker together (all, the default), the HTTP API only (api),
                                          or jobs only (worker); default KEYFRAME_ROLE
  worker                                  run generation jobs only, no HTTP port (serve --role worker)
  migrate                                 apply pending database migrations and exit
  users create <user_id>                  add a user
  users list [--json]                     list users with their webhook secrets
  users show <user_id> [--json]           a user's usage against their limits
  keys create --user <user_id> [--scope <scope>]... [--name <label>] [--json]
                                          create an API key (printed once)
  keys list [--user <user_id>] [--json]   list keys (never the keys themselves)
  keys revoke <key_id>                    revoke a key; it fails from the next request on

Configuration comes from the environment (see README); the CLI uses the same
KEYFRAME_DATA_DIR (or KEYFRAME_DATABASE_URL) as the server. Commands other
than serve and migrate never change the schema: when it is behind, run
keyframe migrate.`;

type Out = { stdout: (s: string) => void; stderr: (s: string) => void };

/** Runs one CLI command; resolves to the process exit code (0 ok, 1 failure, 2 usage). */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv, out: Out): Promise<number> {
  try {
    const [group, action, ...rest] = argv;
    if (group === undefined) throw new UsageError('missing command');
    if (group === 'help' || group === '--help' || group === '-h') {
      out.stdout(USAGE);
      return 0;
    }
    if (group === 'serve' || group === 'worker') return await serve(loadConfig({ ...env, KEYFRAME_ROLE: roleOf(group, [action, ...rest], env) }), out);
    const config = loadConfig(env);
    if (group === 'migrate') return await migrate(config, rest, out);
    if (group === 'users' && action === 'create') return await withKeys(config, (k) => usersCreate(k, rest, out));
    if (group === 'users' && action === 'list') return await withKeys(config, (k) => usersList(k, rest, out));
    if (group === 'users' && action === 'show') return await usersShow(config, rest, out);
    if (group === 'keys' && action === 'create') return await withKeys(config, (k) => keysCreate(k, rest, out));
    if (group === 'keys' && action === 'list') return await withKeys(config, (k) => keysList(k, rest, out));
    if (group === 'keys' && action === 'revoke') return await withKeys(config, (k) => keysRevoke(k, rest, out));
    throw new UsageError(`unknown command: ${argv.slice(0, 2).join(' ')}`);
  } catch (err) {
    if (err instanceof UsageError || isParseArgsError(err)) {
      out.stderr(`keyframe: ${(err as Error).message} (see keyframe --help)`);
      return 2;
    }
    if (err instanceof ConfigError || err instanceof ApiError) {
      out.stderr(`keyframe: ${err.message}`);
      return 1;
    }
    out.stderr(`keyframe: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}

/** The role `serve [--role r]` or `worker` runs: the flag, else KEYFRAME_ROLE (which `worker` may not contradict). */
function roleOf(group: 'serve' | 'worker', args: (string | undefined)[], env: NodeJS.ProcessEnv): string | undefined {
  const given = args.filter((a): a is string => a !== undefined);
  if (group === 'worker') {
    parse(given, {}, 0);
    const fromEnv = env.KEYFRAME_ROLE?.trim();
    if (fromEnv && fromEnv !== 'worker') throw new UsageError(`keyframe worker contradicts KEYFRAME_ROLE=${fromEnv}`);
    return 'worker';
  }
  const { values } = parse(given, { role: { type: 'string' } }, 0);
  if (values.role !== undefined && !(ROLES as readonly string[]).includes(values.role)) {
    throw new UsageError(`--role must be one of ${ROLES.join(', ')}, got "${values.role}"`);
  }
  return values.role ?? env.KEYFRAME_ROLE;
}

/** Runs the configured role until SIGTERM or SIGINT, then shuts it down in order (src/start/shutdown.ts). */
async function serve(config: Config, out: Out): Promise<number> {
  // The process's one logger: every part of the role logs through it.
  const log = createLogger(config);
  // Listening before start-up, so that a SIGTERM during it is an orderly shutdown once the role is up.
  const signals = watchShutdownSignals({ timeoutMs: config.shutdownTimeoutSeconds * 1000, log });
  let running: Awaited<ReturnType<typeof startRole>>;
  try {
    running = await startRole(config, log);
  } catch (err) {
    signals.dispose();
    throw err;
  }
  const where =
    config.database.url === null
      ? `data in ${config.dataDir}`
      : `records in PostgreSQL ${describePostgres(config.database.url)}, files in ${config.dataDir}`;
  if (running.role === 'worker') out.stderr(`keyframe worker running generation jobs (${where}); no HTTP port`);
  else out.stderr(`keyframe ${running.role === 'api' ? 'API ' : ''}listening on ${running.server.url} (${where})`);
  await signals.requested;
  // Stop taking work, let running requests finish, hand running jobs back, close pools and clients.
  // The listeners stay: until the process has exited, a second signal exits at once instead of killing it half-way.
  await running.close();
  log.info('shut down');
  return 0;
}

async function migrate(config: Config, args: string[], out: Out): Promise<number> {
  parse(args, {}, 0);
  let applied: string[] = [];
  const db = await openDatabase(databaseTargetOf(config), { onMigrated: (names) => (applied = names) });
  await db.destroy();
  if (applied.length === 0) out.stdout('the database schema is up to date; nothing to apply');
  for (const name of applied) out.stdout(`applied ${name}`);
  return 0;
}

async function withKeys(config: Config, run: (keys: ApiKeys) => Promise<number>): Promise<number> {
  const db = await openDatabase(databaseTargetOf(config), { migrate: false });
  try {
    return await run(new ApiKeys(db));
  } finally {
    await db.destroy();
  }
}

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, positionals: number) {
  const parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(positionals === 0 ? `unexpected argument: ${parsed.positionals[0]}` : 'missing or extra argument');
  }
  return parsed;
}

async function usersCreate(keys: ApiKeys, args: string[], out: Out): Promise<number> {
  const { positionals } = parse(args, {}, 1);
  const { id, created } = await keys.createUser(positionals[0]!);
  out.stdout(created ? `created user ${id}` : `user ${id} already exists`);
  return 0;
}

async function usersList(keys: ApiKeys, args: string[], out: Out): Promise<number> {
  const { values } = parse(args, { json: { type: 'boolean' } }, 0);
  const users = await keys.listUsers();
  if (values.json) out.stdout(JSON.stringify(users));
  else for (const u of users) out.stdout(`${u.id}\tcreated ${u.created_at}\twebhook secret ${u.webhook_secret}`);
  return 0;
}

async function usersShow(config: Config, args: string[], out: Out): Promise<number> {
  const { positionals, values } = parse(args, { json: { type: 'boolean' } }, 1);
  const userId = positionals[0]!;
  const db = await openDatabase(databaseTargetOf(config), { migrate: false });
  let usage;
  try {
    usage = await readUserUsage(db, userId, config.limits, config.storage === 'disk' ? DISK_RESERVATION_GRACE_MS : Infinity);
  } finally {
    await db.destroy();
  }
  if (!usage) {
    out.stderr(`keyframe: no user ${userId}`);
    return 1;
  }
  if (values.json) {
    out.stdout(JSON.stringify(usage));
    return 0;
  }
  const b = usage.stored_bytes;
  out.stdout(`user ${usage.user_id}`);
  out.stdout(`pending uploads\t${usage.pending_uploads.used} / ${usage.pending_uploads.limit}`);
  out.stdout(`stored bytes\t${b.used} / ${b.limit} (${b.stored} stored + ${b.reserved} reserved by pending uploads)`);
  out.stdout(`active generations\t${usage.active_generations.used} / ${usage.active_generations.limit} (queued or running)`);
  out.stdout(`generations, last hour\t${usage.generations_last_hour.used} / ${usage.generations_last_hour.limit}`);
  out.stdout(`presigns per minute\tlimit ${usage.presigns_per_minute.limit} (counted by the API nodes, not in the database)`);
  return 0;
}

async function keysCreate(keys: ApiKeys, args: string[], out: Out): Promise<number> {
  const { values } = parse(
    args,
    { user: { type: 'string' }, scope: { type: 'string', multiple: true }, name: { type: 'string' }, json: { type: 'boolean' } },
    0,
  );
  if (!values.user) throw new UsageError('--user <user_id> is required');
  const created = await keys.createKey({ userId: values.user, scopes: values.scope, name: values.name ?? null });
  if (values.json) {
    const { id, key, user_id, scopes, name, created_at } = created;
    out.stdout(JSON.stringify({ id, key, user_id, scopes, name, created_at }));
  } else {
    out.stdout(created.key);
    out.stderr(`created ${created.id} for ${created.user_id} with scopes ${created.scopes.join(',')}; the key is shown only this once`);
  }
  return 0;
}

async function keysList(keys: ApiKeys, args: string[], out: Out): Promise<number> {
  const { values } = parse(args, { user: { type: 'string' }, json: { type: 'boolean' } }, 0);
  const list = await keys.listKeys(values.user);
  if (values.json) out.stdout(JSON.stringify(list));
  else
    for (const k of list) {
      const state = k.revoked_at ? `revoked ${k.revoked_at}` : 'active';
      out.stdout(`${k.id}\t${k.user_id}\t${k.display_prefix}…\t${k.scopes.join(',')}\t${state}\t${k.name ?? ''}`);
    }
  return 0;
}

async function keysRevoke(keys: ApiKeys, args: string[], out: Out): Promise<number> {
  const { positionals } = parse(args, {}, 1);
  if (!(await keys.revokeKey(positionals[0]!))) {
    out.stderr(`keyframe: no key ${positionals[0]}`);
    return 1;
  }
  out.stdout(`revoked ${positionals[0]}`);
  return 0;
}

/** host:port/database, never the credentials. */
function describePostgres(url: string): string {
  const { host, port, database } = postgresAddress(url);
  return `${host}:${port}/${database}`;
}

function isParseArgsError(err: unknown): boolean {
  return typeof (err as { code?: unknown })?.code === 'string' && (err as { code: string }).code.startsWith('ERR_PARSE_ARGS');
}

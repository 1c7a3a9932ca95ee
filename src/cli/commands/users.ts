import type { Command } from 'commander';
import { loadConfig } from '../../config.js';
import type { ApiKeys } from '../../domain/api-keys.js';
import { recordExit, type CliContext, type Out } from '../context.js';
import { asGroup } from '../group.js';

/** users create / list / show: the users of this server's database. */
export function registerUsersCommands(program: Command, ctx: CliContext): void {
  const users = asGroup(program.command('users').summary('manage users').description("Manages the users of the server's database."));
  // The database modules load only when a command runs (see ./database.ts).
  const run = async (action: (keys: ApiKeys) => Promise<number>) => (await import('./database.js')).withKeys(loadConfig(ctx.env), action);

  users
    .command('create')
    .usage('<user_id>')
    .summary('add a user')
    .description('Adds a user; a user that already exists is left as it is (exit 0).')
    .argument('<user_id>')
    .action(recordExit(ctx, async (userId: string) => run((keys) => usersCreate(keys, userId, ctx.out))));

  users
    .command('list')
    .usage('[--json]')
    .summary('list users with their webhook secrets')
    .option('--json', 'one JSON array')
    .action(recordExit(ctx, async (options: { json?: boolean }) => run((keys) => usersList(keys, options, ctx.out))));

  users
    .command('show')
    .usage('<user_id> [--json]')
    .summary("a user's usage against their limits")
    .description(
      "A user's usage against each limit: pending uploads, stored + reserved bytes, active generations, generations in the last hour, and the presign rate limit. An unknown user exits 1.",
    )
    .argument('<user_id>')
    .option('--json', 'one JSON object')
    .action(recordExit(ctx, async (userId: string, options: { json?: boolean }) => usersShow(ctx, userId, options)));
}

async function usersCreate(keys: ApiKeys, userId: string, out: Out): Promise<number> {
  const { id, created } = await keys.createUser(userId);
  out.stdout(created ? `created user ${id}` : `user ${id} already exists`);
  return 0;
}

async function usersList(keys: ApiKeys, options: { json?: boolean }, out: Out): Promise<number> {
  const users = await keys.listUsers();
  if (options.json) out.stdout(JSON.stringify(users));
  else for (const u of users) out.stdout(`${u.id}\tcreated ${u.created_at}\twebhook secret ${u.webhook_secret}`);
  return 0;
}

async function usersShow(ctx: CliContext, userId: string, options: { json?: boolean }): Promise<number> {
  const { out } = ctx;
  const usage = await (await import('./database.js')).usageOf(loadConfig(ctx.env), userId);
  if (!usage) {
    out.stderr(`keyframe: no user ${userId}`);
    return 1;
  }
  if (options.json) {
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

import type { Command } from 'commander';
import { loadConfig } from '../../config.js';
import type { ApiKeys } from '../../domain/api-keys.js';
import { recordExit, type CliContext, type Out } from '../context.js';
import { asGroup } from '../group.js';
import { collect } from '../option-values.js';

interface CreateOptions {
  user: string;
  scope?: string[];
  name?: string;
  json?: boolean;
}

/** keys create / list / revoke: API keys, stored only as hashes. */
export function registerKeysCommands(program: Command, ctx: CliContext): void {
  const keys = asGroup(program.command('keys').summary('manage API keys').description('Manages API keys; the database keeps only their hashes.'));
  // The database modules load only when a command runs (see ./database.ts).
  const run = async (action: (keys: ApiKeys) => Promise<number>) => (await import('./database.js')).withKeys(loadConfig(ctx.env), action);

  keys
    .command('create')
    .usage('--user <user_id> [--scope <scope>]... [--name <label>] [--json]')
    .summary('create an API key (printed once)')
    .description('Creates an API key and prints it once; a missing user is created. The default scope is templates:read.')
    .requiredOption('--user <user_id>', 'the user the key acts for')
    .option('--scope <scope>', 'a scope the key has (repeatable)', collect)
    .option('--name <label>', 'a label for the key')
    .option('--json', 'one JSON object, the key included')
    .action(recordExit(ctx, async (options: CreateOptions) => run((k) => keysCreate(k, options, ctx.out))));

  keys
    .command('list')
    .usage('[--user <user_id>] [--json]')
    .summary('list keys (never the keys themselves)')
    .option('--user <user_id>', "only this user's keys")
    .option('--json', 'one JSON array')
    .action(recordExit(ctx, async (options: { user?: string; json?: boolean }) => run((k) => keysList(k, options, ctx.out))));

  keys
    .command('revoke')
    .usage('<key_id>')
    .summary('revoke a key; it fails from the next request on')
    .argument('<key_id>')
    .action(recordExit(ctx, async (keyId: string) => run((k) => keysRevoke(k, keyId, ctx.out))));
}

async function keysCreate(keys: ApiKeys, options: CreateOptions, out: Out): Promise<number> {
  const created = await keys.createKey({ userId: options.user, scopes: options.scope, name: options.name ?? null });
  if (options.json) {
    const { id, key, user_id, scopes, name, created_at } = created;
    out.stdout(JSON.stringify({ id, key, user_id, scopes, name, created_at }));
  } else {
    out.stdout(created.key);
    out.stderr(`created ${created.id} for ${created.user_id} with scopes ${created.scopes.join(',')}; the key is shown only this once`);
  }
  return 0;
}

async function keysList(keys: ApiKeys, options: { user?: string; json?: boolean }, out: Out): Promise<number> {
  const list = await keys.listKeys(options.user);
  if (options.json) out.stdout(JSON.stringify(list));
  else
    for (const k of list) {
      const state = k.revoked_at ? `revoked ${k.revoked_at}` : 'active';
      out.stdout(`${k.id}\t${k.user_id}\t${k.display_prefix}…\t${k.scopes.join(',')}\t${state}\t${k.name ?? ''}`);
    }
  return 0;
}

async function keysRevoke(keys: ApiKeys, keyId: string, out: Out): Promise<number> {
  if (!(await keys.revokeKey(keyId))) {
    out.stderr(`keyframe: no key ${keyId}`);
    return 1;
  }
  out.stdout(`revoked ${keyId}`);
  return 0;
}

import type { Command } from 'commander';
import { loadConfig, ROLES, type Config } from '../../config.js';
import { recordExit, UsageError, type CliContext, type Out } from '../context.js';

/**
 * serve, worker and migrate: the server's own process, and its schema. What they
 * run is imported when they run: the server's modules take seconds to load on a
 * busy machine, and the other commands (and --help) need none of them.
 */
export function registerServerCommands(program: Command, ctx: CliContext): void {
  program
    .command('serve')
    .usage('[--role all|api|worker]')
    .summary(
      'start the server (applies pending migrations first): API and worker together (all, the default), the HTTP API only (api), or jobs only (worker); default KEYFRAME_ROLE',
    )
    .description(
      'Starts the server, after applying pending database migrations. SIGTERM or SIGINT shuts it down in order (exit 0); a second signal, or KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS passing, exits 1 at once.',
    )
    .option('--role <role>', `what this process runs: ${ROLES.join(', ')} (default KEYFRAME_ROLE, else all)`)
    .action(
      recordExit(ctx, async (options: { role?: string }) => {
        if (options.role !== undefined && !(ROLES as readonly string[]).includes(options.role)) {
          throw new UsageError(`--role must be one of ${ROLES.join(', ')}, got "${options.role}"`);
        }
        const config = loadConfig({ ...ctx.env, KEYFRAME_ROLE: options.role ?? ctx.env.KEYFRAME_ROLE });
        return (await import('./serve-role.js')).serve(config, ctx.out);
      }),
    );

  program
    .command('worker')
    .summary('run generation jobs only, no HTTP port (serve --role worker)')
    .description('Runs generation jobs only, with no HTTP port: serve --role worker. Needs KEYFRAME_STORAGE=s3.')
    .action(
      recordExit(ctx, async () => {
        const fromEnv = ctx.env.KEYFRAME_ROLE?.trim();
        if (fromEnv && fromEnv !== 'worker') throw new UsageError(`keyframe worker contradicts KEYFRAME_ROLE=${fromEnv}`);
        const config = loadConfig({ ...ctx.env, KEYFRAME_ROLE: 'worker' });
        return (await import('./serve-role.js')).serve(config, ctx.out);
      }),
    );

  program
    .command('migrate')
    .summary('apply pending database migrations and exit')
    .description('Applies pending database migrations and exits; prints the migrations applied.')
    .action(recordExit(ctx, async () => migrate(loadConfig(ctx.env), ctx.out)));
}

async function migrate(config: Config, out: Out): Promise<number> {
  const { databaseTargetOf, openDatabase } = await import('../../db/database.js');
  let applied: string[] = [];
  const db = await openDatabase(databaseTargetOf(config), { onMigrated: (names) => (applied = names) });
  await db.destroy();
  if (applied.length === 0) out.stdout('the database schema is up to date; nothing to apply');
  for (const name of applied) out.stdout(`applied ${name}`);
  return 0;
}

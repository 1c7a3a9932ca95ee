import type { Command } from 'commander';
import { connect, withConnectionOptions, type ConnectionOptions } from '../connection.js';
import { recordExit, type CliContext } from '../context.js';

interface StatusOptions extends ConnectionOptions {
  json?: boolean;
}

/** keyframe status and keyframe upload-status: where a generation or an upload stands. */
export function registerStatusCommands(program: Command, ctx: CliContext): void {
  withConnectionOptions(
    program
      .command('status')
      .usage('<generation_id> [--json]')
      .summary("a generation's status, and its video URL or error")
      .description(
        "Prints a generation's id, status (generating, completed or failed) and its video URL (valid for an hour) or its error; --json prints the API's status body. An unknown generation exits 1.",
      )
      .argument('<generation_id>')
      .option('--json', "the API's status body"),
  ).action(
    recordExit(ctx, async (id: string, options: StatusOptions) => {
      const status = await connect(options, ctx.env).getGeneration(id);
      const detail = status.video_url ?? status.error;
      ctx.out.stdout(options.json ? JSON.stringify(status) : [status.id, status.status, ...(detail ? [detail] : [])].join('\t'));
      return 0;
    }),
  );

  withConnectionOptions(
    program
      .command('upload-status')
      .usage('<s3_key> [--json]')
      .summary("an upload's state (verifies it when it has arrived)")
      .description(
        "Prints an upload's key, state (pending, uploading, uploaded, verified, rejected, expired) and, when rejected, the reason; --json prints the API's status body. Asking verifies an upload that has arrived.",
      )
      .argument('<s3_key>')
      .option('--json', "the API's status body"),
  ).action(
    recordExit(ctx, async (key: string, options: StatusOptions) => {
      const status = await connect(options, ctx.env).uploadStatus(key);
      ctx.out.stdout(options.json ? JSON.stringify(status) : [status.s3_key, status.state, ...(status.reason ? [status.reason] : [])].join('\t'));
      return 0;
    }),
  );
}

import { Command, Help } from 'commander';
import { registerGcCommand } from './commands/gc.js';
import { registerGenerateCommand } from './commands/generate.js';
import { registerKeysCommands } from './commands/keys.js';
import { registerServerCommands } from './commands/server.js';
import { registerStatusCommands } from './commands/status.js';
import { registerUploadCommand } from './commands/upload.js';
import { registerUsersCommands } from './commands/users.js';
import type { CliContext } from './context.js';
import { asGroup } from './group.js';
import { formatRootHelp } from './help.js';

/** The width help is wrapped at: fixed, so that help reads the same in a terminal, a pipe and a test. */
const HELP_WIDTH = 80;

/**
 * A fresh command tree for one run. Settings given here before the commands are
 * added (exitOverride, configureOutput, configureHelp) are inherited by every
 * subcommand: none calls process.exit, and all output goes through ctx.out.
 */
export function buildProgram(ctx: CliContext): Command {
  const { out } = ctx;
  const program = new Command('keyframe')
    .exitOverride()
    .configureOutput({
      // Commander's texts end with a newline; out adds its own.
      writeOut: (text) => out.stdout(text.replace(/\n$/, '')),
      writeErr: (text) => out.stderr(text.replace(/\n$/, '')),
      // Errors are reported by runCli, as one line with the exit code they call for.
      outputError: () => {},
      getOutHelpWidth: () => HELP_WIDTH,
      getErrHelpWidth: () => HELP_WIDTH,
      getOutHasColors: () => false,
      getErrHasColors: () => false,
    })
    .configureHelp({
      formatHelp: (cmd, helper) => (cmd.parent ? Help.prototype.formatHelp.call(helper, cmd, helper) : formatRootHelp(cmd, helper)),
    });
  asGroup(program);

  program.commandsGroup("Server administration (on the server's host, with its configuration):");
  registerServerCommands(program, ctx);
  registerUsersCommands(program, ctx);
  registerKeysCommands(program, ctx);
  registerGcCommand(program, ctx);

  program.commandsGroup('Client (a running server, over HTTP):');
  registerUploadCommand(program, ctx);
  registerGenerateCommand(program, ctx);
  registerStatusCommands(program, ctx);
  return program;
}

import type { Command } from 'commander';
import { UsageError } from './context.js';

/**
 * A command that only groups others (`users`, `keys`), or the root. Commander
 * answers a group called alone with its help on stderr and exit 1; here, as for
 * any usage error, it is one line and exit 2. An action of its own takes that
 * case and unknown subcommands; `help` stays a command (helpCommand), since an
 * action would otherwise remove it.
 */
export function asGroup(group: Command): Command {
  return group
    .usage('<command>')
    .helpCommand(true)
    .argument('[command...]')
    .action((words: string[]) => {
      const path = commandPath(group);
      const known = group.commands.map((c) => c.name()).filter((n) => n !== 'help');
      if (words.length > 0) throw new UsageError(`unknown command: ${[...path, words[0]].join(' ')}`);
      throw new UsageError(path.length === 0 ? 'missing command' : `missing command: ${path.join(' ')} ${known.join('|')}`);
    });
}

/** The names from the root down to `cmd`, the root's own left out (`['keys']`). */
function commandPath(cmd: Command): string[] {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names;
}

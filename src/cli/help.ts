import type { Command, Help } from 'commander';

/** Column where the root help's descriptions start. */
const TERM_WIDTH = 40;

const FOOTER = `Run keyframe <command> --help for a command's options.

The server commands read the configuration from the environment (see README);
they use the same KEYFRAME_DATA_DIR (or KEYFRAME_DATABASE_URL) as the server.
Commands other than serve and migrate never change the schema: when it is
behind, run keyframe migrate.

The client commands talk to a running server over HTTP: --url, else
KEYFRAME_URL, else http://127.0.0.1:3000; --api-key, else KEYFRAME_API_KEY.
They never read the server's configuration.`;

/**
 * The root's help: every command down to the leaves with its usage, grouped as
 * the commands were (helpGroup), so that one screen shows the whole CLI. The
 * usages are the commands' own (`.usage()`), so the two helps cannot disagree.
 */
export function formatRootHelp(program: Command, helper: Help): string {
  const width = helper.helpWidth ?? 80;
  const lines = [`usage: ${program.name()} <command>`, ''];
  const groups = new Map<string, string[]>();
  for (const top of helper.visibleCommands(program)) {
    if (top.name() === 'help') continue;
    const group = groups.get(top.helpGroup()) ?? [];
    groups.set(top.helpGroup(), group);
    for (const [term, cmd] of leaves(top, [])) group.push(...item(term, helper.subcommandDescription(cmd), width));
  }
  for (const [heading, items] of groups) lines.push(heading, ...items, '');
  lines.push(FOOTER);
  return lines.join('\n') + '\n';
}

/** The runnable commands under `cmd`, each with its full name and usage (`keys create --user <user_id> …`). */
function leaves(cmd: Command, parents: string[]): [string, Command][] {
  const names = [...parents, cmd.name()];
  const subs = cmd.commands.filter((c) => c.name() !== 'help');
  // A command without options of its own has the generated usage `[options]` (just --help): left out here.
  if (subs.length === 0) return [[[...names, cmd.usage().replace(/^\[options\]\s*/, '')].join(' ').trim(), cmd]];
  return subs.flatMap((sub) => leaves(sub, names));
}

/** One command's lines: its term, then the description wrapped at TERM_WIDTH (on the next line when the term is too long). */
function item(term: string, description: string, width: number): string[] {
  const indent = ' '.repeat(TERM_WIDTH + 2);
  const wrapped = wrap(description, Math.max(20, width - TERM_WIDTH - 2));
  const first = `  ${term}`;
  if (first.length < TERM_WIDTH) return [first.padEnd(TERM_WIDTH + 2) + wrapped[0], ...wrapped.slice(1).map((l) => indent + l)];
  return [first, ...wrapped.map((l) => indent + l)];
}

/** Words into lines of at most `width` characters (a longer word gets a line of its own). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line];
}

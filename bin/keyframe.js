#!/usr/bin/env node
// Entry point of the `keyframe` command; the code is compiled to dist/ by `npm ci` (prepare) or `npm run build`.
import { runCli } from '../dist/cli/main.js';

const code = await runCli(process.argv.slice(2), process.env, {
  stdout: (line) => process.stdout.write(line + '\n'),
  stderr: (line) => process.stderr.write(line + '\n'),
  // Progress bars and status lines redraw in place only on a terminal.
  terminal: process.stderr.isTTY
    ? {
        write: (text) => process.stderr.write(text),
        get columns() {
          return process.stderr.columns;
        },
      }
    : undefined,
});
process.exitCode = code;

import type { Command } from 'commander';
import { connect, withConnectionOptions, type ConnectionOptions } from '../connection.js';
import { recordExit, type CliContext, type Out } from '../context.js';
import { uploadFile, type UploadRow } from '../upload-file.js';
import { UploadJournal } from '../upload-journal.js';

interface UploadOptions extends ConnectionOptions {
  contentType?: string;
  json?: boolean;
}

/** keyframe upload <file...>: references uploaded to a running server, one after the other. */
export function registerUploadCommand(program: Command, ctx: CliContext): void {
  withConnectionOptions(
    program
      .command('upload')
      .usage('<file...> [--content-type <type>] [--json]')
      .summary('upload reference files; prints each s3_key and whether it was verified')
      .description(
        'Uploads each file as a reference (multipart for large files) and prints one line per file: its s3_key, the verification\'s verdict (verified or rejected) and, when rejected, the reason. Progress goes to stderr: a bar on a terminal, else a line per 10 %. A multipart upload cut short (Ctrl-C, a kill, a lost network) is resumed when the same command runs again on the same unchanged file: its journal is $XDG_STATE_HOME/keyframe/uploads.json (default ~/.local/state). Exits 1 if any file failed or was rejected.',
      )
      .argument('<file...>')
      .option('--content-type <type>', 'the type to presign with (default: detected from the first bytes)')
      .option('--json', 'one JSON array of {file, s3_key, state, content_type, size, media, reason?}'),
  ).action(recordExit(ctx, async (files: string[], options: UploadOptions) => upload(files, options, ctx)));
}

async function upload(files: string[], options: UploadOptions, ctx: CliContext): Promise<number> {
  const client = connect(options, ctx.env);
  const journal = UploadJournal.inStateDir(ctx.env);
  const rows: UploadRow[] = [];
  for (const file of files) {
    const row = await uploadFile(client, file, ctx.out, { contentType: options.contentType, journal });
    rows.push(row);
    if (!options.json) printRow(row, ctx.out);
    else if (row.state === 'failed') ctx.out.stderr(`keyframe: ${row.file}: ${row.reason}`);
  }
  if (options.json) ctx.out.stdout(JSON.stringify(rows));
  return rows.every((r) => r.state === 'verified') ? 0 : 1;
}

/** `<s3_key>\tverified`, `<s3_key>\trejected\t<reason>`; a file that could not be uploaded has no key: a `keyframe:` line on stderr. */
function printRow(row: UploadRow, out: Out): void {
  if (row.s3_key === null) out.stderr(`keyframe: ${row.file}: ${row.reason}`);
  else out.stdout([row.s3_key, row.state, ...(row.reason !== undefined ? [row.reason] : [])].join('\t'));
}

import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { KeyframeError, type CreateGenerationRequest, type GenerationStatus, type KeyframeClient } from '../../client/node.js';
import { connect, withConnectionOptions, type ConnectionOptions } from '../connection.js';
import { recordExit, UsageError, type CliContext, type Out } from '../context.js';
import { downloadTo } from '../download.js';
import { collect, positiveInteger, positiveSeconds } from '../option-values.js';
import { startStatusLine } from '../status-line.js';
import { isLocalFile, uploadFile } from '../upload-file.js';
import { UploadJournal } from '../upload-journal.js';

interface GenerateOptions extends ConnectionOptions {
  model: string;
  prompt: string;
  startFrame?: string;
  endFrame?: string;
  ingredient?: string[];
  character?: string[];
  sourceVideo?: string;
  referenceVideo?: string[];
  audio?: string;
  duration?: string;
  resolution?: string;
  aspectRatio?: string;
  count?: number;
  hasAudio?: boolean;
  template?: string;
  webhookUrl?: string;
  wait?: boolean;
  timeout?: number;
  out?: string;
  json?: boolean;
}

/** keyframe generate: references uploaded as needed, a generation created, and optionally waited for and downloaded. */
export function registerGenerateCommand(program: Command, ctx: CliContext): void {
  withConnectionOptions(
    program
      .command('generate')
      .usage('--model <id> --prompt <text> [reference options] [--wait] [--out <video.mp4>] [--json]')
      .summary('create a generation; --wait waits for it, --out downloads the video')
      .description(
        'Creates a generation. A reference value that names a local file is uploaded first (with progress) and its key used; any other value is taken as an s3_key. A file rejected at upload ends the command (exit 1) before anything is created. Without --wait, prints the generation id(s); with --wait, waits and prints each id, its status and its video URL (or error). Exits 1 when a generation failed.',
      )
      .requiredOption('--model <id>', 'the model, such as keyframe-local or veo-3.1')
      .requiredOption('--prompt <text>', 'the prompt')
      .option('--start-frame <file|key>', 'image: the first frame')
      .option('--end-frame <file|key>', 'image: the last frame')
      .option('--ingredient <file|key>', 'image: a visual reference (repeatable)', collect)
      .option('--character <file|key>', 'image: a character reference (repeatable)', collect)
      .option('--source-video <file|key>', 'video: the source, for edit-capable models')
      .option('--reference-video <file|key>', 'video: a reference (repeatable)', collect)
      .option('--audio <file|key>', 'audio, for audio-driven models')
      .option('--duration <duration>', 'whole seconds, such as 5s')
      .option('--resolution <resolution>', 'such as 720p')
      .option('--aspect-ratio <ratio>', 'such as 16:9')
      .option('--count <n>', 'videos to queue', positiveInteger)
      .option('--has-audio', 'ask for audio where the model supports it')
      .option('--template <id>', 'a template to associate with the generation')
      .option('--webhook-url <url>', 'receives a signed POST when each generation completes or fails')
      .option('--wait', 'wait until each generation has completed or failed (status on stderr)')
      .option('--timeout <seconds>', 'with --wait: give up after this long (default 900)', positiveSeconds)
      .option('--out <video.mp4>', 'download the video to this file (implies --wait; with --count 1)')
      .option('--json', 'the create response as JSON; with --wait, a JSON array of the final statuses'),
  ).action(recordExit(ctx, async (options: GenerateOptions) => generate(options, ctx)));
}

async function generate(options: GenerateOptions, ctx: CliContext): Promise<number> {
  const { out } = ctx;
  if (options.out !== undefined && (options.count ?? 1) > 1) throw new UsageError('--out takes one video: use it with --count 1');
  const client = connect(options, ctx.env);
  // Checked before anything is uploaded or rendered: a render is not wasted on a directory that is not there.
  if (options.out !== undefined) await assertDirectory(path.dirname(path.resolve(options.out)));

  const request = await buildRequest(options, client, out, UploadJournal.inStateDir(ctx.env));
  const created = await client.createGeneration(request);
  const ids = created.generations.map((g) => g.generation_id);
  if (!options.wait && options.out === undefined) {
    if (options.json) out.stdout(JSON.stringify(created));
    else for (const id of ids) out.stdout(id);
    return 0;
  }

  const finals: (GenerationStatus & { file?: string })[] = [];
  // One at a time, so that one status line is drawn at once; the server renders them side by side meanwhile.
  for (const id of ids) finals.push(await waitFor(client, id, options.timeout, out));
  let code = 0;
  for (const status of finals) {
    if (status.status === 'completed' && options.out !== undefined && status.video_url) {
      await downloadTo(status.video_url, options.out);
      status.file = options.out;
    }
    if (status.status !== 'completed') {
      out.stderr(`keyframe: generation ${status.id} ${status.status}${status.error ? `: ${status.error}` : ''}`);
      code = 1;
    }
    if (!options.json) out.stdout([status.id, status.status, ...detail(status)].join('\t'));
  }
  if (options.json) out.stdout(JSON.stringify(finals));
  return code;
}

/** The tail of a text line: the downloaded file or the video URL, or the error. */
const detail = (s: GenerationStatus & { file?: string }): string[] => {
  const text = s.file ?? s.video_url ?? s.error;
  return text ? [text] : [];
};

async function waitFor(client: KeyframeClient, id: string, timeoutSeconds: number | undefined, out: Out): Promise<GenerationStatus> {
  // Just created: the server answered `generating` for it.
  const line = startStatusLine(out, id, 'generating');
  try {
    return await client.waitForGeneration(id, {
      ...(timeoutSeconds !== undefined ? { timeoutMs: timeoutSeconds * 1000 } : {}),
      onStatus: (s) => line.update(s.status),
    });
  } catch (err) {
    if (err instanceof KeyframeError && err.error === 'timeout') {
      throw new Error(`${err.message}; keyframe status ${id} says where it stands`, { cause: err });
    }
    throw err;
  } finally {
    line.end();
  }
}

/** The request, each reference flag's value resolved to a key (a local file uploaded once, however many flags name it). */
async function buildRequest(options: GenerateOptions, client: KeyframeClient, out: Out, journal: UploadJournal): Promise<CreateGenerationRequest> {
  const uploaded = new Map<string, string>();
  const key = async (flag: string, value: string): Promise<string> => {
    if (!(await isLocalFile(value))) return value;
    const known = uploaded.get(path.resolve(value));
    if (known) return known;
    const row = await uploadFile(client, value, out, { journal });
    if (row.state !== 'verified' || row.s3_key === null) {
      const why = row.state === 'failed' ? `could not be uploaded` : `was ${row.state}`;
      throw new Error(`${flag} ${value} ${why}${row.reason ? `: ${row.reason}` : ''}; no generation was created`);
    }
    uploaded.set(path.resolve(value), row.s3_key);
    return row.s3_key;
  };
  const one = (flag: string, value: string | undefined) => (value === undefined ? undefined : key(flag, value));
  const many = async (flag: string, values: string[] | undefined) => {
    if (values === undefined) return undefined;
    const keys: string[] = [];
    for (const value of values) keys.push(await key(flag, value));
    return keys;
  };

  const request: CreateGenerationRequest = {
    prompt: options.prompt,
    modelName: options.model,
    aspectRatio: options.aspectRatio,
    duration: options.duration,
    resolution: options.resolution,
    count: options.count,
    hasAudio: options.hasAudio,
    startFrameKey: await one('--start-frame', options.startFrame),
    endFrameKey: await one('--end-frame', options.endFrame),
    ingredientImageKeys: await many('--ingredient', options.ingredient),
    characterReferenceImageKeys: await many('--character', options.character),
    sourceVideoKey: await one('--source-video', options.sourceVideo),
    referenceVideoKeys: await many('--reference-video', options.referenceVideo),
    audioKey: await one('--audio', options.audio),
    templateId: options.template,
    webhook_url: options.webhookUrl,
  };
  // Fields not given are left out, not sent as null.
  return Object.fromEntries(Object.entries(request).filter(([, v]) => v !== undefined)) as CreateGenerationRequest;
}

async function assertDirectory(dir: string): Promise<void> {
  const stats = await stat(dir).catch(() => null);
  if (!stats?.isDirectory()) throw new Error(`--out: the directory ${dir} does not exist`);
}

import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ffprobePath } from '../../src/media/binaries.js';
import { BIN, ensureBuilt, ROOT, type KeyframeRun } from '../helpers/build.js';
import { QUOTAS_LIFTED, startTestServer, type TestServer } from '../helpers/server.js';

/**
 * The client commands (upload, generate, status, upload-status) of the real
 * `keyframe` command against a real running server, over HTTP.
 */

const MEDIA = path.join(ROOT, 'test/fixtures/media');
const PNG = path.join(MEDIA, 'sample.png');
const MP3 = path.join(MEDIA, 'sample.mp3');
const GARBAGE_PNG = path.join(MEDIA, 'garbage.png');

/** A generation renders with ffmpeg on a machine shared by several test runs: more than runKeyframe's 30 s. */
const RUN_TIMEOUT_MS = 120_000;

let server: TestServer;
let apiKey: string;
let scratch: string;

/** `node bin/keyframe.js …` with only PATH, the server's URL and (unless overridden) the key in its environment; stdout and stderr are pipes. */
function keyframe(args: string[], env: Record<string, string> = {}): Promise<KeyframeRun> {
  return capture(process.execPath, [BIN, ...args], env);
}

/** The same under `script`, whose pseudo-terminal makes stderr (and stdout) a TTY; both arrive merged on `stdout`. */
function keyframeOnTty(args: string[]): Promise<KeyframeRun> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return capture('script', ['-qec', [process.execPath, BIN, ...args].map(quote).join(' '), '/dev/null'], {});
}

function capture(command: string, args: string[], env: Record<string, string>): Promise<KeyframeRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', KEYFRAME_URL: server.url, KEYFRAME_API_KEY: apiKey, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Exactly one non-empty line. */
const oneLine = (text: string) => {
  expect(text.endsWith('\n')).toBe(true);
  expect(text.trimEnd().split('\n')).toHaveLength(1);
  expect(text.trim().length).toBeGreaterThan(0);
};

/** Neither stream shows the key, not even in part. */
const keyNotShown = (run: KeyframeRun, key = apiKey) => {
  const secret = key.slice('prism_sk_'.length);
  for (const text of [run.stdout, run.stderr]) {
    expect(text).not.toContain(secret.slice(0, 12));
    expect(text).not.toContain(secret.slice(-12));
  }
};

const hasScript = (() => {
  try {
    execFileSync('which', ['script'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
})();

beforeAll(async () => {
  ensureBuilt();
  server = await startTestServer(QUOTAS_LIFTED);
  apiKey = (await server.createKey('cli-client')).key;
  scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-cli-'));
}, 120_000);
afterAll(async () => {
  await server?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe('keyframe upload', () => {
  it('--json: sample.png and sample.mp3 are uploaded and verified, one array on stdout', async () => {
    const res = await keyframe(['upload', PNG, MP3, '--json']);
    expect(res.code, res.stderr).toBe(0);
    oneLine(res.stdout);
    const rows = JSON.parse(res.stdout) as Record<string, any>[];
    expect(rows.map((r) => [r.file, r.state, r.content_type])).toEqual([
      [PNG, 'verified', 'image/png'],
      [MP3, 'verified', 'audio/mpeg'],
    ]);
    expect(rows[0]).toMatchObject({ size: 189, media: { width: 16, height: 16, video_codec: 'png' } });
    expect(rows[1]!.media.audio_codec).toBe('mp3');
    expect(rows[0]).not.toHaveProperty('reason');
    for (const row of rows) {
      expect(row.s3_key).toMatch(/^users\/cli-client\/user-uploads\//);
      // The server agrees.
      const status = await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(row.s3_key)}`, { key: apiKey });
      expect(status.body.state).toBe('verified');
    }
    keyNotShown(res);
  });

  it('without a terminal: plain progress lines on stderr, and a key and its state per file on stdout', async () => {
    const res = await keyframe(['upload', PNG]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^users\/cli-client\/\S+\.png\tverified\n$/);
    expect(res.stderr.split('\n').filter(Boolean)).toEqual([`${PNG}: 0% of 189 B`, `${PNG}: 100%`]);
    // Nothing drawn in place: no carriage return, no escape sequence.
    expect(res.stderr).not.toMatch(/[\r\x1b]/);
  });

  it.skipIf(!hasScript)('on a terminal: a progress bar, redrawn in place up to 100 %', async () => {
    // Relative to the command's directory: an absolute path's length depends on where the checkout is, and a
    // label too long for the terminal is cut from the front.
    const file = path.relative(ROOT, PNG);
    const res = await keyframeOnTty(['upload', file]);
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toContain(`\r${file} [${'-'.repeat(10)}`);
    expect(res.stdout).toMatch(new RegExp(`\\r${file.replace(/[.]/g, '\\.')} \\[#{10,}\\] 100%  189 B / 189 B\\x1b\\[K`));
    expect(res.stdout).toMatch(/users\/cli-client\/\S+\.png\tverified/);
    // The line-per-tenth form is for pipes only.
    expect(res.stdout).not.toContain(`${file}: 100%`);
  });

  it('a rejected file: its key, "rejected" and the reason; exit 1; the other files still go up', async () => {
    const res = await keyframe(['upload', GARBAGE_PNG, PNG]);
    expect(res.code).toBe(1);
    const [rejected, verified, ...rest] = res.stdout.trimEnd().split('\n');
    expect(rest).toEqual([]);
    expect(rejected).toMatch(/^users\/cli-client\/\S+\.png\trejected\t\S.*$/);
    expect(verified).toMatch(/\tverified$/);
    const key = rejected!.split('\t')[0]!;
    const status = await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(key)}`, { key: apiKey });
    expect(rejected!.split('\t')[2]).toBe(status.body.reason);
  });

  it('a missing file fails that file: exit 1, one keyframe: line naming it', async () => {
    const res = await keyframe(['upload', path.join(scratch, 'nothing-here.png')]);
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    oneLine(res.stderr);
    expect(res.stderr).toContain('nothing-here.png: no such file');
  });
});

describe('keyframe generate, status and upload-status', () => {
  let generationId: string;

  it('--start-frame <png> --wait --out: the local file is uploaded, the video rendered and downloaded', async () => {
    const target = path.join(scratch, 'out.mp4');
    const res = await keyframe(['generate', '--model', 'keyframe-local', '--prompt', 'demo', '--start-frame', PNG, '--wait', '--out', target]);
    expect(res.code, res.stderr).toBe(0);
    const [id, state, file, ...rest] = res.stdout.trimEnd().split('\t');
    expect(rest).toEqual([]);
    expect(id).toMatch(/^gen_/);
    expect([state, file]).toEqual(['completed', target]);
    generationId = id!;
    // Progress of the start frame, then the wait, on stderr.
    expect(res.stderr).toContain(`${PNG}: 100%`);
    expect(res.stderr).toContain(`${id}: completed`);

    const bytes = await readFile(target);
    expect(bytes.subarray(4, 8).toString('latin1')).toBe('ftyp');
    const streams = execFileSync(ffprobePath(), ['-v', 'error', '-show_entries', 'stream=codec_type', '-of', 'csv=p=0', target], { encoding: 'utf8' });
    expect(streams.split('\n')).toContain('video');
    // Written through a temporary file, renamed: nothing else is left next to it.
    expect(await readdir(scratch)).toEqual(['out.mp4']);
    keyNotShown(res);
  });

  it('status: the id, completed and the video URL; --json: the API status body', async () => {
    expect(generationId).toBeDefined();
    const text = await keyframe(['status', generationId]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^${generationId}\\tcompleted\\thttp://\\S+\\n$`));

    const json = await keyframe(['status', generationId, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const api = await server.api('GET', `/api/generations/${generationId}`, { key: apiKey });
    const status = JSON.parse(json.stdout);
    expect(status).toMatchObject({ id: generationId, status: 'completed', error: null });
    expect(Object.keys(status).sort()).toEqual(Object.keys(api.body).sort());
  });

  it('without --wait: the id alone, at once; a key as --start-frame is used as it is', async () => {
    const uploaded = JSON.parse((await keyframe(['upload', PNG, '--json'])).stdout)[0].s3_key as string;
    const res = await keyframe(['generate', '--model', 'keyframe-local', '--prompt', 'demo', '--start-frame', uploaded]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^gen_\S+\n$/);
    // No upload happened: the value is not a local file.
    expect(res.stderr).toBe('');
    const api = await server.api('GET', `/api/generations/${res.stdout.trim()}`, { key: apiKey });
    expect(api.status).toBe(200);
  });

  it('a rejected local frame ends the command before any generation is created: exit 1', async () => {
    const before = await server.db.selectFrom('generations').select(({ fn }) => fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const res = await keyframe(['generate', '--model', 'keyframe-local', '--prompt', 'demo', '--start-frame', GARBAGE_PNG, '--wait']);
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain(`keyframe: --start-frame ${GARBAGE_PNG} was rejected`);
    const after = await server.db.selectFrom('generations').select(({ fn }) => fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    expect(Number(after.n)).toBe(Number(before.n));
  });

  it('upload-status: the key and its state', async () => {
    const key = JSON.parse((await keyframe(['upload', MP3, '--json'])).stdout)[0].s3_key as string;
    const res = await keyframe(['upload-status', key]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toBe(`${key}\tverified\n`);
  });

  it('an unknown generation: exit 1, one line with the API message', async () => {
    const res = await keyframe(['status', 'gen_doesnotexist']);
    const api = await server.api('GET', '/api/generations/gen_doesnotexist', { key: apiKey });
    expect(api.status).toBe(404);
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    oneLine(res.stderr);
    expect(res.stderr).toBe(`keyframe: ${api.body.message}\n`);
  });
});

describe("generate's usage errors: exit 2, one line, nothing created", () => {
  it.each([
    [['generate', '--prompt', 'demo'], 'no --model'],
    [['generate', '--model', 'keyframe-local'], 'no --prompt'],
    [['generate', '--model', 'keyframe-local', '--prompt', 'demo', '--count', '0'], '--count 0'],
    [['generate', '--model', 'keyframe-local', '--prompt', 'demo', '--timeout', 'soon'], '--timeout not a number'],
    [['generate', '--model', 'keyframe-local', '--prompt', 'demo', '--count', '2', '--out', 'x.mp4'], '--out with two videos'],
  ])('%j (%s)', async (args) => {
    const res = await keyframe(args);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    oneLine(res.stderr);
  });
});

describe('keys and URLs', () => {
  it('no key (neither KEYFRAME_API_KEY nor --api-key) is a usage error: exit 2, one line naming KEYFRAME_API_KEY', async () => {
    for (const args of [['upload', PNG], ['generate', '--model', 'keyframe-local', '--prompt', 'demo'], ['status', 'gen_x'], ['upload-status', 'k']]) {
      const res = await keyframe(args, { KEYFRAME_API_KEY: '' });
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stdout).toBe('');
      oneLine(res.stderr);
      expect(res.stderr).toContain('KEYFRAME_API_KEY');
    }
  });

  it('a bad key fails with exit 1 and the envelope message, and is never printed', async () => {
    const bad = `prism_sk_${'Q'.repeat(20)}${'z'.repeat(23)}`;
    const refused = await server.api('GET', '/api/generations/gen_x', { key: bad });
    expect(refused.status).toBe(401);
    for (const args of [['status', 'gen_x'], ['upload', PNG]]) {
      const res = await keyframe(args, { KEYFRAME_API_KEY: bad });
      expect(res.code, args.join(' ')).toBe(1);
      expect(res.stdout).toBe('');
      expect(res.stderr.trimEnd().split('\n').at(-1)).toBe(`keyframe: ${refused.body.message}`);
      keyNotShown(res, bad);
    }
  });

  it('a mistyped option that carries the key is a usage error that does not print the key', async () => {
    const res = await keyframe(['status', 'gen_x', `--api-kye=${apiKey}`]);
    expect(res.code).toBe(2);
    oneLine(res.stderr);
    expect(res.stderr).toContain('--api-kye');
    keyNotShown(res);
  });

  it('--api-key and --url win over the environment', async () => {
    const res = await keyframe(['upload-status', 'users/cli-client/none', '--url', server.url, '--api-key', apiKey], {
      KEYFRAME_API_KEY: 'prism_sk_wrong',
      KEYFRAME_URL: 'http://127.0.0.1:1',
    });
    // Authenticated at the right server: the key is unknown there (404), not refused (401) or unreachable.
    const api = await server.api('GET', '/api/uploads/status?key=users/cli-client/none', { key: apiKey });
    expect(res.code).toBe(1);
    expect(res.stderr).toBe(`keyframe: ${api.body.message}\n`);
    keyNotShown(res);
  });

  it('the default URL is http://127.0.0.1:3000 (shown in --help), and a URL that is not http(s) is a usage error', async () => {
    const help = await keyframe(['status', '--help']);
    expect(help.stdout).toContain('http://127.0.0.1:3000');
    const res = await keyframe(['status', 'gen_x'], { KEYFRAME_URL: 'ftp://127.0.0.1' });
    expect(res.code).toBe(2);
    oneLine(res.stderr);
    expect(res.stderr).toContain('KEYFRAME_URL');
  });
});

describe('--help', () => {
  const commands = [
    ['serve'],
    ['worker'],
    ['migrate'],
    ['users', 'create'],
    ['users', 'list'],
    ['users', 'show'],
    ['keys', 'create'],
    ['keys', 'list'],
    ['keys', 'revoke'],
    ['upload'],
    ['generate'],
    ['status'],
    ['upload-status'],
  ];

  it('the root help lists every command with its usage', async () => {
    const res = await keyframe(['--help']);
    expect(res.code).toBe(0);
    for (const command of commands) expect(res.stdout).toMatch(new RegExp(`^  ${command.join(' ')}( |$)`, 'm'));
    expect(res.stdout).toContain('upload <file...> [--content-type <type>] [--json]');
  });

  it.each(commands.map((c) => [c.join(' '), c] as const))('keyframe %s --help: its usage and options on stdout, exit 0', async (_, command) => {
    const res = await keyframe([...command, '--help'], { KEYFRAME_API_KEY: '' });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout.startsWith(`Usage: keyframe ${command.join(' ')} `)).toBe(true);
    expect(res.stdout).toContain('-h, --help');
  });

  it('the client commands document --url and --api-key; generate every reference flag', async () => {
    for (const command of ['upload', 'generate', 'status', 'upload-status']) {
      const res = await keyframe([command, '--help']);
      expect(res.stdout).toContain('--url <url>');
      expect(res.stdout).toContain('--api-key <key>');
    }
    const generate = (await keyframe(['generate', '--help'])).stdout;
    for (const flag of ['--start-frame', '--end-frame', '--ingredient', '--character', '--source-video', '--reference-video', '--audio', '--wait', '--timeout', '--out', '--json']) {
      expect(generate).toContain(flag);
    }
  });
});


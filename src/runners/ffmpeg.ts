import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

let cached: string | null = null;

/**
 * The ffmpeg to run: the system's, when one is on PATH (usually newer and
 * maintained by the OS), else the static build that @ffmpeg-installer/ffmpeg
 * ships inside node_modules (nothing is downloaded at install time).
 */
export function ffmpegPath(): string {
  if (cached) return cached;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'ffmpeg');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return (cached = candidate);
    } catch {
      // not here
    }
  }
  const require = createRequire(import.meta.url);
  cached = (require('@ffmpeg-installer/ffmpeg') as { path: string }).path;
  return cached;
}

/** Runs ffmpeg to completion; rejects with the end of its stderr when it fails, and kills it when `signal` aborts. */
export function runFfmpeg(args: string[], signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    // Progress on a pipe ties ffmpeg's life to ours: if this process dies, ffmpeg's next
    // progress write fails (SIGPIPE) and it stops, instead of rendering on as an orphan.
    const child = spawn(ffmpegPath(), ['-hide_banner', '-nostdin', '-loglevel', 'error', '-progress', 'pipe:1', '-y', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      signal,
      killSignal: 'SIGKILL',
    });
    child.stdout.resume();
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    child.once('error', reject);
    child.once('close', (code, sig) => {
      if (code === 0) resolve();
      else reject(new Error(`ffmpeg exited with ${code ?? sig}: ${stderr.trim()}`));
    });
  });
}

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const cached = new Map<string, string>();

/**
 * The program to run: the system's, when one is on PATH (usually newer and
 * maintained by the OS), else the static build its npm package ships inside
 * node_modules (nothing is downloaded at install time).
 */
function binary(name: 'ffmpeg' | 'ffprobe', npmPackage: string): string {
  const known = cached.get(name);
  if (known) return known;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      cached.set(name, candidate);
      return candidate;
    } catch {
      // not here
    }
  }
  const shipped = (require(npmPackage) as { path: string }).path;
  cached.set(name, shipped);
  return shipped;
}

export const ffmpegPath = () => binary('ffmpeg', '@ffmpeg-installer/ffmpeg');
export const ffprobePath = () => binary('ffprobe', '@ffprobe-installer/ffprobe');

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import type { MultipartResume } from '../client/node.js';

/** An entry older than this is dropped: the server has expired its upload long before. */
const ENTRY_LIFETIME_MS = 7 * 24 * 3600_000;

interface Entry extends MultipartResume {
  saved_at: number;
}

/**
 * The multipart uploads `keyframe upload` started and did not finish, so that the same command
 * run again on the same file resumes them (as tus-js-client keeps upload URLs by fingerprint).
 * Kept in `$XDG_STATE_HOME/keyframe/uploads.json` (default `~/.local/state`), one entry per
 * fingerprint of the server, the file's real path, its size and mtime, and the type asked for;
 * an entry holds what resuming needs and no secret. Written whole through a temporary file and
 * a rename (0600), so a kill leaves the old journal or the new one. Two commands finishing at
 * once may lose one's entry, and a journal that cannot be written keeps none: that upload then
 * starts afresh next time, nothing worse.
 */
export class UploadJournal {
  constructor(private readonly file: string) {}

  static inStateDir(env: NodeJS.ProcessEnv): UploadJournal {
    const stateHome = env.XDG_STATE_HOME?.trim() || path.join(homedir(), '.local', 'state');
    return new UploadJournal(path.join(stateHome, 'keyframe', 'uploads.json'));
  }

  static fingerprint(parts: { baseUrl: string; realPath: string; size: number; mtimeMs: number; contentType: string | undefined }): string {
    const text = [parts.baseUrl, parts.realPath, parts.size, Math.trunc(parts.mtimeMs), parts.contentType ?? ''].join('\n');
    return createHash('sha256').update(text).digest('hex');
  }

  get(fingerprint: string): MultipartResume | undefined {
    const entry = this.read()[fingerprint];
    return entry ? { key: entry.key, uploadId: entry.uploadId, partSize: entry.partSize } : undefined;
  }

  /** Whether the entry was written. */
  set(fingerprint: string, resume: MultipartResume): boolean {
    return this.write({ ...this.read(), [fingerprint]: { ...resume, saved_at: Date.now() } });
  }

  remove(fingerprint: string): void {
    const entries = this.read();
    if (!(fingerprint in entries)) return;
    delete entries[fingerprint];
    this.write(entries);
  }

  /** The live entries; a missing or unreadable journal is an empty one (it only saves work). */
  private read(): Record<string, Entry> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(this.file, 'utf8'));
    } catch {
      return {};
    }
    if (typeof parsed !== 'object' || parsed === null) return {};
    const live: Record<string, Entry> = {};
    for (const [fingerprint, value] of Object.entries(parsed)) {
      const entry = value as Partial<Entry>;
      const valid = typeof entry.key === 'string' && typeof entry.uploadId === 'string' && Number.isSafeInteger(entry.partSize) && Number.isFinite(entry.saved_at);
      if (valid && Date.now() - entry.saved_at! < ENTRY_LIFETIME_MS) live[fingerprint] = entry as Entry;
    }
    return live;
  }

  /** Best effort: a journal that cannot be written (a read-only home) costs a resume, never the upload. */
  private write(entries: Record<string, Entry>): boolean {
    const temporary = `${this.file}.${process.pid}.tmp`;
    try {
      mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
      writeFileSync(temporary, JSON.stringify(entries), { mode: 0o600 });
      renameSync(temporary, this.file);
      return true;
    } catch {
      try {
        rmSync(temporary, { force: true });
      } catch {
        // Nothing was made there.
      }
      return false;
    }
  }
}

import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadJournal } from '../../src/cli/upload-journal.js';

/** The journal `keyframe upload` resumes from (src/cli/upload-journal.ts), on real files. */

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-journal-'));
});
afterAll(() => rm(scratch, { recursive: true, force: true }));

const resume = { key: 'users/a/user-uploads/batch_1/file_1.mp4', uploadId: 'up-1', partSize: 5 * 1024 * 1024 };
const fingerprintOf = (over: Partial<Parameters<typeof UploadJournal.fingerprint>[0]> = {}) =>
  UploadJournal.fingerprint({ baseUrl: 'http://127.0.0.1:3000', realPath: '/data/clip.mp4', size: 10, mtimeMs: 1000.5, contentType: undefined, ...over });

describe('UploadJournal', () => {
  it('keeps an entry under $XDG_STATE_HOME/keyframe/uploads.json (0600), reads it back in a new instance, removes it', async () => {
    const state = path.join(scratch, 'state');
    const journal = UploadJournal.inStateDir({ XDG_STATE_HOME: state });
    expect(journal.set(fingerprintOf(), resume)).toBe(true);
    const file = path.join(state, 'keyframe', 'uploads.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(UploadJournal.inStateDir({ XDG_STATE_HOME: state }).get(fingerprintOf())).toEqual(resume);
    journal.remove(fingerprintOf());
    expect(journal.get(fingerprintOf())).toBeUndefined();
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({});
  });

  it('a changed file, server or type is another fingerprint', () => {
    const base = fingerprintOf();
    for (const other of [{ size: 11 }, { mtimeMs: 2000 }, { realPath: '/data/other.mp4' }, { baseUrl: 'http://127.0.0.1:3001' }, { contentType: 'video/mp4' }]) {
      expect(fingerprintOf(other)).not.toBe(base);
    }
  });

  it('drops entries older than 7 days and ignores a corrupt journal', async () => {
    const file = path.join(scratch, 'old.json');
    const eightDaysAgo = Date.now() - 8 * 24 * 3600_000;
    await writeFile(file, JSON.stringify({ old: { ...resume, saved_at: eightDaysAgo }, fresh: { ...resume, saved_at: Date.now() }, broken: { key: 1 } }));
    const journal = new UploadJournal(file);
    expect(journal.get('old')).toBeUndefined();
    expect(journal.get('broken')).toBeUndefined();
    expect(journal.get('fresh')).toEqual(resume);
    await writeFile(file, '{not json');
    expect(journal.get('fresh')).toBeUndefined();
  });

  it('a journal that cannot be written throws nothing (the upload goes on without it)', async () => {
    // Under a regular file: no directory can be made there, whoever runs the test (root included).
    const notADirectory = path.join(scratch, 'a-file');
    await writeFile(notADirectory, '');
    const journal = new UploadJournal(path.join(notADirectory, 'keyframe', 'uploads.json'));
    expect(journal.set(fingerprintOf(), resume)).toBe(false);
    expect(journal.get(fingerprintOf())).toBeUndefined();
  });
});

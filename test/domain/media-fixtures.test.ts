import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileTypeFromBuffer } from 'file-type';
import { describe, expect, it } from 'vitest';
import { ALLOWED_CONTENT_TYPES, lookupMediaType } from '../../src/domain/media-types.js';
import { GENUINE, GENUINE_DEEP, HOSTILE_MEDIA, MEDIA_DIR, readFixture } from '../helpers/media-fixtures.js';

describe('media fixtures', () => {
  it.each(GENUINE)('$file is detected by file-type as $sniffedAs, which the table accepts for $contentType', async ({ file, contentType, sniffedAs }) => {
    const detected = await fileTypeFromBuffer(readFixture(file));
    expect(detected?.mime).toBe(sniffedAs);
    expect(lookupMediaType(contentType)?.sniffedAs).toContain(sniffedAs);
  });

  it('has a genuine file for every allowed content type', () => {
    expect(GENUINE.map((f) => f.contentType).sort()).toEqual([...ALLOWED_CONTENT_TYPES].sort());
  });

  it.each(['page.html', 'image.svg', 'polyglot-html-png.html', 'random.bin', 'empty.bin'])(
    '%s is not detected as any allowed media type',
    async (file) => {
      const detected = await fileTypeFromBuffer(readFixture(file));
      const accepted = ALLOWED_CONTENT_TYPES.flatMap((t) => lookupMediaType(t)!.sniffedAs);
      expect(accepted).not.toContain(detected?.mime);
    },
  );

  it('keeps every fixture tiny', () => {
    for (const { file } of GENUINE) expect(statSync(path.join(MEDIA_DIR, file)).size).toBeLessThan(16 * 1024);
    // The ones that must reach past the first 64 KiB, and no further than they need.
    for (const { file } of [...GENUINE_DEEP, ...HOSTILE_MEDIA]) expect(statSync(path.join(MEDIA_DIR, file)).size, file).toBeLessThan(80 * 1024);
  });

  it.each(GENUINE_DEEP)('$file ($why) is detected by file-type as $sniffedAs', async ({ file, sniffedAs }) => {
    expect((await fileTypeFromBuffer(readFixture(file)))?.mime).toBe(sniffedAs);
  });

  it.each(HOSTILE_MEDIA)('$file fools the magic-byte check: file-type says it is $contentType', async ({ file, contentType }) => {
    // Each is hostile in a way the first-bytes sniff alone does not see (what issue 16 is about).
    const detected = await fileTypeFromBuffer(readFixture(file).subarray(0, 64 * 1024));
    expect(lookupMediaType(contentType)!.sniffedAs).toContain(detected?.mime);
  });

  it('documents every fixture in the README', () => {
    const readme = readFileSync(path.join(MEDIA_DIR, 'README.md'), 'utf8');
    for (const file of readdirSync(MEDIA_DIR).filter((f) => f !== 'README.md')) expect(readme, file).toContain(`| ${file} |`);
  });
});

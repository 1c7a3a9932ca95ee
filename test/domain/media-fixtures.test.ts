import { statSync } from 'node:fs';
import path from 'node:path';
import { fileTypeFromBuffer } from 'file-type';
import { describe, expect, it } from 'vitest';
import { ALLOWED_CONTENT_TYPES, lookupMediaType } from '../../src/domain/media-types.js';
import { GENUINE, MEDIA_DIR, readFixture } from '../helpers/media-fixtures.js';

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
  });
});

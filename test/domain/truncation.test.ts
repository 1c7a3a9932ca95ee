import { fileTypeFromBuffer } from 'file-type';
import { describe, expect, it } from 'vitest';
import { lookupMediaType } from '../../src/domain/media-types.js';
import { findTruncation } from '../../src/domain/truncation.js';
import { GENUINE, readFixture } from '../helpers/media-fixtures.js';

/** The containers whose first bytes state their lengths: PNG, ISO base media, RIFF. */
const CONTAINERS = GENUINE.filter((f) => ['sample.png', 'sample.mp4', 'sample.mov', 'sample.m4a', 'sample.wav', 'sample.webp'].includes(f.file));

describe('findTruncation', () => {
  it.each(GENUINE)('finds nothing missing in the whole $file', ({ file }) => {
    const bytes = readFixture(file);
    expect(findTruncation(bytes, bytes.length)).toBeNull();
  });

  it.each(CONTAINERS)('catches $file cut at every length: the sniff fails or the cut is found', async ({ file, contentType }) => {
    const bytes = readFixture(file);
    const accepted = lookupMediaType(contentType)!.sniffedAs;
    const missed: number[] = [];
    for (let length = 1; length < bytes.length; length++) {
      const cut = bytes.subarray(0, length);
      const sniffed = await fileTypeFromBuffer(cut);
      if (sniffed && accepted.includes(sniffed.mime) && findTruncation(cut, length) === null) missed.push(length);
    }
    expect(missed).toEqual([]);
  });

  it('judges only what the first bytes describe: a large object whose later boxes lie beyond them is not called truncated', () => {
    const mp4 = readFixture('sample.mp4');
    // The head of a 10 MB object: its boxes continue past these bytes, and nothing here contradicts its size.
    expect(findTruncation(mp4.subarray(0, 64), 10_000_000)).toBeNull();
  });

  it('reads a RIFF header whose length is unknown (streaming writers) as not truncated', () => {
    const wav = Buffer.from(readFixture('sample.wav'));
    wav.writeUInt32LE(0xffffffff, 4);
    expect(findTruncation(wav, wav.length)).toBeNull();
  });
});

import { describe, expect, it } from 'vitest';
import { ID3_CAPABLE_TYPES, readId3Header } from '../../src/domain/inspection/id3.js';
import { imageDimensionsProblem, readImageDimensions } from '../../src/domain/inspection/image-dimensions.js';
import { findMarkupMarker, findPlaylistMarker } from '../../src/domain/inspection/polyglot.js';
import { lookupMediaType } from '../../src/domain/media-types.js';
import { findTruncation } from '../../src/domain/truncation.js';
import { judgeProbe } from '../../src/domain/verification.js';
import { parseProbeOutput } from '../../src/media/ffprobe.js';
import { GENUINE, GENUINE_DEEP, readFixture } from '../helpers/media-fixtures.js';

/** The inspection functions verification is made of, on the checked-in fixtures and bytes built here. */

const id3 = (bodyLength: number, { version = 4, flags = 0 } = {}) => {
  const header = Buffer.from([0x49, 0x44, 0x33, version, 0, flags, 0, 0, 0, 0]);
  for (let i = 0; i < 4; i++) header[6 + i] = (bodyLength >> (7 * (3 - i))) & 0x7f;
  return Buffer.concat([header, Buffer.alloc(bodyLength)]);
};

describe('readId3Header', () => {
  it('reads the syncsafe size of a tag longer than the first 64 KiB', () => {
    expect(readId3Header(readFixture('id3-hls.mp3'), 0)).toEqual({ kind: 'tag', end: 70_010, version: 4 });
  });

  it('counts the v2.4 footer, and offsets the end by where the tag starts', () => {
    expect(readId3Header(id3(100, { flags: 0x10 }), 0)).toMatchObject({ end: 120 });
    expect(readId3Header(id3(100, { version: 3, flags: 0x10 }), 500)).toMatchObject({ end: 610 });
  });

  it('finds the second of two tags in a row where the first ends (large-id3.mp3)', () => {
    const bytes = readFixture('large-id3.mp3');
    const first = readId3Header(bytes, 0);
    expect(first).toMatchObject({ kind: 'tag', end: 70_010 });
    const second = readId3Header(bytes.subarray(70_010), 70_010);
    expect(second.kind).toBe('tag');
    expect(readId3Header(bytes.subarray((second as { end: number }).end), 0)).toEqual({ kind: 'none' });
  });

  it('refuses what starts as a tag and is not one', () => {
    expect(readId3Header(Buffer.from('ID3\x04\0\0\x80\0\0\0', 'latin1'), 0)).toMatchObject({ kind: 'malformed', reason: /not syncsafe/ });
    expect(readId3Header(Buffer.from('ID3\x09\0\0\0\0\0\0', 'latin1'), 0)).toMatchObject({ kind: 'malformed', reason: /unknown version/ });
    expect(readId3Header(Buffer.from('ID3\x04', 'latin1'), 7)).toMatchObject({ kind: 'malformed', reason: /at byte 7 is cut short/ });
  });

  it('finds no tag in the genuine files that do not start with one', () => {
    for (const { file } of GENUINE.filter((f) => f.file !== 'sample.mp3')) expect(readId3Header(readFixture(file), 0), file).toEqual({ kind: 'none' });
  });

  it('allows ID3 only in front of MP3 and AAC', () => {
    expect([...ID3_CAPABLE_TYPES].sort()).toEqual(['audio/aac', 'audio/mpeg']);
  });
});

describe('findPlaylistMarker', () => {
  it('finds the HLS playlist where the long ID3 tag of id3-hls.mp3 ends', () => {
    const bytes = readFixture('id3-hls.mp3');
    expect(findPlaylistMarker(bytes.subarray(0, 65_536), 0)).toBeNull();
    expect(findPlaylistMarker(bytes.subarray(70_010), 70_010)).toEqual({ name: 'an HLS/M3U playlist (#EXTM3U)', offset: 70_010 });
  });

  it('finds HLS tags and ffconcat lists, at their absolute offset', () => {
    expect(findPlaylistMarker(Buffer.from('xx#EXT-X-ENDLIST'), 100)).toMatchObject({ offset: 102, name: /#EXT-X-/ });
    expect(findPlaylistMarker(Buffer.from('\0\0ffconcat version 1.0\nfile a'), 0)).toMatchObject({ offset: 2, name: /concat/ });
  });

  it('finds none in any genuine fixture', () => {
    for (const { file } of [...GENUINE, ...GENUINE_DEEP]) expect(findPlaylistMarker(readFixture(file), 0), file).toBeNull();
  });
});

describe('findMarkupMarker', () => {
  it('finds HTML behind a GIF signature, case-insensitively', () => {
    expect(findMarkupMarker(readFixture('gif-html.gif'), 0)).toEqual({ name: 'HTML markup (<html>)', offset: 6 });
    expect(findMarkupMarker(Buffer.from('GIF89a\0\0<ScRiPt src=x>'), 0)).toEqual({ name: 'HTML markup (<script>)', offset: 8 });
    expect(findMarkupMarker(Buffer.from('\x89PNG....<!DOCTYPE HTML>'), 0)).toMatchObject({ name: 'script markup (<!doctype html)' });
    expect(findMarkupMarker(Buffer.from('....<svg/onload=alert(1)>'), 0)).toMatchObject({ name: 'HTML markup (<svg>)', offset: 4 });
  });

  it('finds none in XMP metadata, nor in any genuine fixture', () => {
    const xmp = Buffer.from(
      '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">' +
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>',
    );
    expect(findMarkupMarker(xmp, 0)).toBeNull();
    // A tag name that only starts like a marker is not one.
    expect(findMarkupMarker(Buffer.from('<htmlish><bodyguard><metadata>'), 0)).toBeNull();
    for (const { file } of [...GENUINE, ...GENUINE_DEEP]) expect(findMarkupMarker(readFixture(file), 0), file).toBeNull();
  });
});

describe('image dimensions from the header', () => {
  it('reads the 8000×8000 a small PNG declares, and refuses it', () => {
    const dims = readImageDimensions(readFixture('huge-dimensions.png'));
    expect(dims).toEqual({ width: 8000, height: 8000 });
    expect(imageDimensionsProblem(dims!)).toBe('the image is 8000×8000 pixels (64 MP), over the limit of 40 MP');
  });

  it('refuses a side over 8192 and accepts the limits themselves', () => {
    expect(imageDimensionsProblem({ width: 8193, height: 10 })).toMatch(/over the limit of 8192 pixels a side/);
    expect(imageDimensionsProblem({ width: 8192, height: 4882 })).toBeNull();
    expect(imageDimensionsProblem({ width: 8192, height: 4883 })).toMatch(/40 MP/);
  });

  it('needs more than the first 64 KiB for a JPEG whose SOF sits behind a large EXIF segment', () => {
    const jpg = readFixture('large-exif.jpg');
    expect(readImageDimensions(jpg.subarray(0, 65_536))).toBeNull();
    expect(readImageDimensions(jpg)).toEqual({ width: 16, height: 16 });
  });

  it('reads every genuine image', () => {
    for (const { file, contentType } of GENUINE) {
      if (lookupMediaType(contentType)!.family === 'image') expect(readImageDimensions(readFixture(file)), file).toEqual({ width: 16, height: 16 });
    }
  });
});

describe('findTruncation where the stream starts', () => {
  it.each([
    ['id3-truncated.png', /a PNG chunk ends at byte \d+ of a \d+-byte object, counting from byte 42/],
    ['id3-truncated.mp4', /the \w+ box ends at byte \d+ of a \d+-byte object, counting from byte 42/],
  ])('catches %s behind its ID3 tag', (file, reason) => {
    const bytes = readFixture(file);
    const start = (readId3Header(bytes, 0) as { end: number }).end;
    expect(start).toBe(42);
    expect(findTruncation(bytes.subarray(start), bytes.length, start)).toMatch(reason);
  });
});

const stream = (kind: 'video' | 'audio', framesDecoded: number, width: number | null = null, height: number | null = null, codec = 'x') => ({
  kind,
  codec,
  width,
  height,
  framesDecoded,
});

describe('judgeProbe', () => {
  const png = lookupMediaType('image/png')!;
  const mp4 = lookupMediaType('video/mp4')!;
  const mp3 = lookupMediaType('audio/mpeg')!;

  it('refuses an image whose data does not decode, or decodes at other dimensions than its header', () => {
    expect(judgeProbe(png, { streams: [stream('video', 0, 16, 16)], durationSeconds: null }, { width: 16, height: 16 })).toBe('the image data could not be decoded');
    expect(judgeProbe(png, { streams: [stream('video', 1, 16, 16)], durationSeconds: null }, { width: 32, height: 16 })).toMatch(/decodes at 16×16 pixels, not the 32×16/);
    expect(judgeProbe(png, { streams: [], durationSeconds: null }, null)).toMatch(/0 image streams/);
  });

  it('refuses video that is too large, too long or undecodable, and accepts an unknown length', () => {
    const ok = stream('video', 5, 1920, 1080, 'h264');
    expect(judgeProbe(mp4, { streams: [stream('video', 5, 4097, 100)], durationSeconds: 1 }, null)).toMatch(/4097×100 pixels, over the limit/);
    expect(judgeProbe(mp4, { streams: [stream('video', 5, 4096, 4096)], durationSeconds: 1 }, null)).toMatch(/over the limit/);
    expect(judgeProbe(mp4, { streams: [ok], durationSeconds: 300.5 }, null)).toBe('the video is 300.5 s long, over the 300 s limit');
    // MediaRecorder's WebM states no duration: accepted, recorded as unknown.
    expect(judgeProbe(mp4, { streams: [ok], durationSeconds: null }, null)).toMatchObject({ duration_seconds: null });
    expect(judgeProbe(mp4, { streams: [stream('video', 0, 32, 32)], durationSeconds: 1 }, null)).toBe('the video data could not be decoded');
    expect(judgeProbe(mp4, { streams: [stream('audio', 5)], durationSeconds: 1 }, null)).toMatch(/no video stream/);
    expect(judgeProbe(mp4, { streams: [ok, stream('audio', 3, null, null, 'aac')], durationSeconds: 12 }, null)).toEqual({
      width: 1920,
      height: 1080,
      duration_seconds: 12,
      video_codec: 'h264',
      audio_codec: 'aac',
    });
  });

  it('refuses audio that is too long or undecodable, and ignores cover art', () => {
    expect(judgeProbe(mp3, { streams: [stream('audio', 4, null, null, 'mp3')], durationSeconds: 601 }, null)).toMatch(/601 s long, over the 600 s limit/);
    expect(judgeProbe(mp3, { streams: [stream('audio', 0)], durationSeconds: 10 }, null)).toBe('the audio data could not be decoded');
    expect(judgeProbe(mp3, { streams: [stream('video', 1, 500, 500, 'mjpeg'), stream('audio', 4, null, null, 'mp3')], durationSeconds: 10 }, null)).toEqual({
      width: null,
      height: null,
      duration_seconds: 10,
      video_codec: null,
      audio_codec: 'mp3',
    });
  });
});

describe('parseProbeOutput', () => {
  it('reads the JSON ffprobe writes, with a missing nb_read_frames as nothing decoded', () => {
    const out = '{"streams":[{"codec_name":"png","codec_type":"video","width":16,"height":16}],"format":{}}';
    expect(parseProbeOutput(out)).toEqual({ streams: [{ kind: 'video', codec: 'png', width: 16, height: 16, framesDecoded: 0 }], durationSeconds: null });
    expect(parseProbeOutput('{"streams":[{"codec_type":"audio","codec_name":"mp3","nb_read_frames":"4"}],"format":{"duration":"0.432000"}}')).toEqual({
      streams: [{ kind: 'audio', codec: 'mp3', width: null, height: null, framesDecoded: 4 }],
      durationSeconds: 0.432,
    });
  });
});

/**
 * ID3v2 tags in front of a media stream, parsed rather than skipped blindly.
 * A tag is "ID3", a major version (2, 3 or 4), a revision, flags, and the
 * size of what follows the 10-byte header as four 7-bit ("syncsafe") bytes;
 * version 4 may add a 10-byte footer (flag 0x10). Writers may put several
 * tags in a row, and ffmpeg skips them all whatever demuxer it is told to use,
 * so the real stream starts where the last one ends: that is where a file is
 * judged, never at byte 0.
 */

/** Content types whose files really carry an ID3v2 prefix; in front of anything else it is a rejection. */
export const ID3_CAPABLE_TYPES: ReadonlySet<string> = new Set(['audio/mpeg', 'audio/aac']);

/** Tags in a row that verification follows; more is a rejection (no real file has more than two). */
export const MAX_ID3_TAGS = 4;

const HEADER_BYTES = 10;
const FOOTER_FLAG = 0x10;

/** What the bytes at one offset say about an ID3v2 tag there. */
export type Id3Header =
  | { kind: 'none' }
  /** A tag whose header is well-formed: it ends (header, body and footer) at `end`, an absolute offset. */
  | { kind: 'tag'; end: number; version: number }
  /** The bytes start as a tag ("ID3") but the header is not one. */
  | { kind: 'malformed'; reason: string };

/**
 * Reads the ID3v2 header at the start of `bytes`, which begin at absolute
 * offset `offset` of the object. Fewer than 10 bytes starting with "ID3" are
 * a malformed tag: the caller always passes every byte it has there.
 */
export function readId3Header(bytes: Uint8Array, offset: number): Id3Header {
  if (bytes.length < 3 || bytes[0] !== 0x49 || bytes[1] !== 0x44 || bytes[2] !== 0x33) return { kind: 'none' };
  if (bytes.length < HEADER_BYTES) return { kind: 'malformed', reason: `an ID3 tag header at byte ${offset} is cut short` };
  const version = bytes[3]!;
  const revision = bytes[4]!;
  const flags = bytes[5]!;
  if (version < 2 || version > 4 || revision === 0xff) {
    return { kind: 'malformed', reason: `the ID3 tag at byte ${offset} has an unknown version 2.${version}.${revision}` };
  }
  let size = 0;
  for (let i = 6; i < HEADER_BYTES; i++) {
    const b = bytes[i]!;
    if (b & 0x80) return { kind: 'malformed', reason: `the ID3 tag at byte ${offset} has a size that is not syncsafe` };
    size = size * 128 + b;
  }
  const footer = version === 4 && (flags & FOOTER_FLAG) !== 0 ? HEADER_BYTES : 0;
  return { kind: 'tag', end: offset + HEADER_BYTES + size + footer, version };
}

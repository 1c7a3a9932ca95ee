/**
 * Finds uploads that were cut short, from their first bytes and their total size
 * alone. A magic-byte check only proves that a file *starts* as its type; the
 * containers below also say, near their start, how long their parts are, so a
 * part that would run past the end of the object means bytes are missing.
 * Only what the first bytes describe is checked: a structure that begins beyond
 * them is not read (that would need more of the object), so this never rejects
 * for lack of data, only for data that contradicts the size.
 */

/**
 * Why the object is incomplete, or null when nothing in `head` says so.
 * `head` holds the object's bytes from `streamStart` on: where the media
 * stream really starts, after any prefix verification parsed (ID3 tags), never
 * byte 0 when there is one, since a prefix would hide the container's header.
 * Byte offsets in the answer count from `streamStart`, and say so.
 */
export function findTruncation(head: Uint8Array, objectSize: number, streamStart = 0): string | null {
  const reason = streamTruncation(head, objectSize - streamStart);
  return reason === null || streamStart === 0 ? reason : `${reason}, counting from byte ${streamStart}, where the stream starts`;
}

function streamTruncation(head: Uint8Array, objectSize: number): string | null {
  if (startsWith(head, PNG_SIGNATURE)) return pngTruncation(head, objectSize);
  if (ascii(head, 4, 8) === 'ftyp') return isoBmffTruncation(head, objectSize);
  if (ascii(head, 0, 4) === 'RIFF') return riffTruncation(head, objectSize);
  return null;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** PNG: signature, then chunks of length(4) type(4) data crc(4), ending with IEND. */
function pngTruncation(head: Uint8Array, objectSize: number): string | null {
  const view = dataView(head);
  let offset = PNG_SIGNATURE.length;
  while (offset + 8 <= head.length) {
    const end = offset + 12 + view.getUint32(offset);
    if (end > objectSize) return `truncated: a PNG chunk ends at byte ${end} of a ${objectSize}-byte object`;
    if (ascii(head, offset + 4, offset + 8) === 'IEND') return null;
    offset = end;
  }
  // The whole object was read, or its last chunk reaches its end, and no IEND came.
  if (offset >= objectSize || head.length >= objectSize) return 'truncated: the PNG has no IEND chunk';
  return null;
}

/** MP4, MOV, M4A (ISO base media): top-level boxes of size(4) type(4) [largesize(8)]. */
function isoBmffTruncation(head: Uint8Array, objectSize: number): string | null {
  const view = dataView(head);
  let offset = 0;
  let sawMovie = false;
  while (offset < objectSize && offset + 8 <= head.length) {
    let size = view.getUint32(offset);
    const type = ascii(head, offset + 4, offset + 8);
    if (size === 0) return null; // the last box, running to the end of the file
    if (size === 1) {
      if (offset + 16 > head.length) return null;
      size = Number(view.getBigUint64(offset + 8));
    }
    if (size < 8) return `malformed: a ${type} box declares ${size} bytes`;
    const end = offset + size;
    if (end > objectSize) return `truncated: the ${type} box ends at byte ${end} of a ${objectSize}-byte object`;
    sawMovie ||= type === 'moov';
    offset = end;
  }
  // The whole object was read, or its last box reaches its end, and no box describes
  // the media: it ended before its moov box (perhaps within that box's header).
  if ((offset >= objectSize || head.length >= objectSize) && !sawMovie) return 'truncated: the file has no moov box';
  return null;
}

/** WAV, WebP (RIFF): the header states the length of everything after its first 8 bytes. */
function riffTruncation(head: Uint8Array, objectSize: number): string | null {
  if (head.length < 8) return null;
  const declared = dataView(head).getUint32(4, true);
  // Streaming writers that cannot seek back leave the length at its maximum: unknown, not wrong.
  if (declared === 0xffffffff) return null;
  const end = 8 + declared;
  return end > objectSize ? `truncated: the RIFF header declares ${end} bytes, the object has ${objectSize}` : null;
}

const dataView = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

function startsWith(bytes: Uint8Array, prefix: readonly number[]): boolean {
  return bytes.length >= prefix.length && prefix.every((b, i) => bytes[i] === b);
}

function ascii(bytes: Uint8Array, start: number, end: number): string {
  return end <= bytes.length ? Buffer.from(bytes.subarray(start, end)).toString('latin1') : '';
}

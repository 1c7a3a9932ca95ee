/**
 * Text that turns a media file into something else for another reader: a
 * playlist or concat list (which ffmpeg, once it probes, follows to other
 * files and URLs) in any file, and HTML or script markup (which a browser that
 * sniffs runs) inside an image. Looked for in the windows verification reads.
 *
 * The markers are long enough that compressed media data, which looks like
 * noise, does not contain one by chance (the shortest, `<svg` and a delimiter,
 * turns up in about one 64 KiB window of noise in 300 000), and none of them
 * is XMP (`<?xpacket`, `<x:xmpmeta`, `<rdf:RDF`): that metadata is XML inside
 * genuine JPEG, PNG and WebP files and is no reason to refuse them.
 */

/** HLS and ffconcat: case-sensitive, as the formats are. */
const PLAYLIST_MARKERS: readonly { text: string; name: string }[] = [
  { text: '#EXTM3U', name: 'an HLS/M3U playlist (#EXTM3U)' },
  { text: '#EXT-X-', name: 'an HLS playlist tag (#EXT-X-)' },
  { text: 'ffconcat version', name: 'an ffmpeg concat list (ffconcat version)' },
];

/**
 * HTML elements that run or load something, matched case-insensitively as
 * HTML is, and only when followed by whitespace, `/` or `>` as a tag is.
 */
const HTML_TAGS = ['html', 'head', 'body', 'script', 'iframe', 'frameset', 'object', 'embed', 'meta', 'svg'];
const HTML_TAG = new RegExp(`<(${HTML_TAGS.join('|')})[\\t\\n\\f\\r />]`, 'i');
/** Other markup a browser or server would run: a doctype, PHP, a javascript: URL. */
const SCRIPT_MARKERS = /<!doctype[\t\n\f\r ]+html|<\?php|javascript:/i;

/** A marker found: what it is and where (absolute offset in the object). */
export interface Marker {
  name: string;
  offset: number;
}

/** The first playlist or concat-list marker in `window` (at absolute `offset`), or null. */
export function findPlaylistMarker(window: Uint8Array, offset: number): Marker | null {
  const bytes = Buffer.from(window.buffer, window.byteOffset, window.byteLength);
  let found: Marker | null = null;
  for (const marker of PLAYLIST_MARKERS) {
    const at = bytes.indexOf(marker.text, 0, 'latin1');
    if (at >= 0 && (found === null || offset + at < found.offset)) found = { name: marker.name, offset: offset + at };
  }
  return found;
}

/** The first HTML or script marker in `window` (at absolute `offset`), or null. */
export function findMarkupMarker(window: Uint8Array, offset: number): Marker | null {
  // latin1 maps each byte to one character, so string offsets are byte offsets.
  const text = Buffer.from(window.buffer, window.byteOffset, window.byteLength).toString('latin1');
  const tag = HTML_TAG.exec(text);
  const script = SCRIPT_MARKERS.exec(text);
  const first = [tag, script].filter((m): m is RegExpExecArray => m !== null).sort((a, b) => a.index - b.index)[0];
  if (!first) return null;
  const name = first === tag ? `HTML markup (<${tag![1]!.toLowerCase()}>)` : `script markup (${first[0].toLowerCase()})`;
  return { name, offset: offset + first.index };
}

import type { DownloadHeaders } from '../storage/object-store.js';

/**
 * The one table of what may be uploaded: each allowed content type, its family,
 * the extension its keys get, and which sniffed types (as the `file-type` package
 * names them) count as "the bytes really are this type". Nothing that a browser
 * would run (SVG, HTML, JavaScript) is here, and nothing may be added that is.
 */
export type MediaFamily = 'image' | 'video' | 'audio';

export interface MediaType {
  contentType: string;
  family: MediaFamily;
  extension: string;
  /** MIME types `file-type` reports for genuine files of this type. */
  sniffedAs: readonly string[];
  /**
   * The one ffmpeg/ffprobe demuxer (`-f`) that opens files of this type. Media
   * tools are never left to probe for a format: probing is how a playlist or a
   * concat list hidden in an "MP3" gets followed.
   */
  demuxer: string;
}

/** Upper size limit of each family, as Prism documents (MB = 2^20 bytes). */
export const MAX_BYTES: Readonly<Record<MediaFamily, number>> = {
  image: 20 * 1024 * 1024,
  video: 200 * 1024 * 1024,
  audio: 50 * 1024 * 1024,
};

/**
 * What a reference may decode to, by family: beyond these, a reference costs a
 * renderer (or a video model) more memory and time than any model accepts.
 * Images are checked from their header at verification; video and audio by
 * ffprobe on a private copy. Pixels are width x height of one frame.
 */
export const MEDIA_LIMITS = {
  image: { maxSide: 8192, maxPixels: 40_000_000 },
  video: { maxSide: 4096, maxPixels: 4096 * 2304, maxDurationSeconds: 300 },
  audio: { maxDurationSeconds: 600 },
} as const;

const TABLE: readonly MediaType[] = [
  { contentType: 'image/png', family: 'image', extension: 'png', sniffedAs: ['image/png', 'image/apng'], demuxer: 'png_pipe' },
  { contentType: 'image/jpeg', family: 'image', extension: 'jpg', sniffedAs: ['image/jpeg'], demuxer: 'jpeg_pipe' },
  { contentType: 'image/webp', family: 'image', extension: 'webp', sniffedAs: ['image/webp'], demuxer: 'webp_pipe' },
  { contentType: 'image/gif', family: 'image', extension: 'gif', sniffedAs: ['image/gif'], demuxer: 'gif' },
  { contentType: 'video/mp4', family: 'video', extension: 'mp4', sniffedAs: ['video/mp4', 'video/x-m4v'], demuxer: 'mov' },
  { contentType: 'video/quicktime', family: 'video', extension: 'mov', sniffedAs: ['video/quicktime'], demuxer: 'mov' },
  { contentType: 'video/webm', family: 'video', extension: 'webm', sniffedAs: ['video/webm'], demuxer: 'matroska' },
  { contentType: 'audio/mpeg', family: 'audio', extension: 'mp3', sniffedAs: ['audio/mpeg'], demuxer: 'mp3' },
  { contentType: 'audio/wav', family: 'audio', extension: 'wav', sniffedAs: ['audio/wav', 'audio/vnd.wave', 'audio/x-wav'], demuxer: 'wav' },
  // An .m4a is an MP4 container: file-type names it by its brand, which encoders set either way.
  { contentType: 'audio/mp4', family: 'audio', extension: 'm4a', sniffedAs: ['audio/mp4', 'audio/x-m4a', 'video/mp4'], demuxer: 'mov' },
  { contentType: 'audio/aac', family: 'audio', extension: 'aac', sniffedAs: ['audio/aac'], demuxer: 'aac' },
  { contentType: 'audio/ogg', family: 'audio', extension: 'ogg', sniffedAs: ['audio/ogg', 'audio/opus'], demuxer: 'ogg' },
  // WebM audio and video share one container; file-type reports both as video/webm.
  { contentType: 'audio/webm', family: 'audio', extension: 'weba', sniffedAs: ['audio/webm', 'video/webm'], demuxer: 'matroska' },
  { contentType: 'audio/flac', family: 'audio', extension: 'flac', sniffedAs: ['audio/flac', 'audio/x-flac'], demuxer: 'flac' },
];

const BY_CONTENT_TYPE = new Map(TABLE.map((t) => [t.contentType, t]));
const BY_EXTENSION = new Map(TABLE.map((t) => [t.extension, t]));

export const ALLOWED_CONTENT_TYPES: readonly string[] = TABLE.map((t) => t.contentType);

/**
 * Normalises a Content-Type value as HTTP defines it: the media type is
 * case-insensitive and parameters (`; charset=...`) do not change it.
 */
export function normaliseContentType(value: string): string {
  return (value.split(';', 1)[0] ?? '').trim().toLowerCase();
}

/** The table entry for a (normalised or not) content type, or undefined when it is not allowed. */
export function lookupMediaType(contentType: string): MediaType | undefined {
  return BY_CONTENT_TYPE.get(normaliseContentType(contentType));
}

/** The table entry whose keys get `extension` (`png`, `mp4`, …), or undefined. */
export function mediaTypeOfExtension(extension: string): MediaType | undefined {
  return BY_EXTENSION.get(extension);
}

/**
 * How a download of an object of `contentType` is answered: `inline` only for a
 * type in the table above (verified media, safe for <video>, <audio>, <img>),
 * `attachment` for anything else, so a browser never renders what it fetched.
 */
export function downloadHeaders(contentType: string): DownloadHeaders {
  const media = lookupMediaType(contentType);
  if (media) return { contentType: media.contentType, contentDisposition: 'inline' };
  return { contentType: 'application/octet-stream', contentDisposition: 'attachment' };
}

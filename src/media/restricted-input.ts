import type { MediaType } from '../domain/media-types.js';

/**
 * The options an ffmpeg or ffprobe input of a verified reference gets, in
 * front of its `-i`: plain local files only (no http, no pipes, no data: URLs),
 * and the one demuxer its verified type implies, so no playlist, concat list or
 * URL written inside the file is ever followed.
 */
export function restrictedInput(media: Pick<MediaType, 'demuxer'>): string[] {
  return ['-protocol_whitelist', 'file', '-f', media.demuxer];
}

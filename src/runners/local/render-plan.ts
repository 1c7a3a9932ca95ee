import { lookupMediaType, type MediaType } from '../../domain/media-types.js';
import { restrictedInput } from '../../media/restricted-input.js';

/** Frames per second of every rendered video. */
export const FPS = 24;
/** The colour card shown when a job has no visual reference. */
export const CARD_COLOUR = '0x1e293b';

/**
 * One reference as ffmpeg gets it: a private local file and the type it was
 * verified as, which alone decides the demuxer that opens it.
 */
export interface LocalInput {
  file: string;
  contentType: string;
}

export interface RenderPlan {
  width: number;
  height: number;
  durationSeconds: number;
  /** In order of appearance: an image is held as a still, a video plays (looped if short). Empty renders the colour card. */
  visuals: LocalInput[];
  /** A soundtrack, a silent track, or none. */
  audio: LocalInput | 'silent' | null;
  output: string;
}

/**
 * The ffmpeg arguments of a plan: each visual gets an equal share of the
 * duration, scaled to fit the frame (letterboxed, never stretched), and they
 * are concatenated; the soundtrack loops to the full length. Output is MP4,
 * H.264 yuv420p with the index at the front (faststart) so players start at once.
 *
 * Every reference is opened as a plain local file with the demuxer of its
 * verified type (`restrictedInput`), never probed, so nothing written inside a
 * file (a playlist, a concat list, a URL) is followed. A still is decoded once
 * and held by the `loop` filter, and `-xerror` ends the render at the first
 * decoding error: undecodable data fails at once instead of looping.
 */
export function ffmpegArgs(plan: RenderPlan): string[] {
  const { width: w, height: h, durationSeconds: total } = plan;
  const args: string[] = ['-xerror'];
  const filters: string[] = [];
  const visuals = plan.visuals;
  const share = total / Math.max(1, visuals.length);
  const fit = `scale=${w}:${h}:force_original_aspect_ratio=decrease,pad=${w}:${h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1`;

  if (visuals.length === 0) {
    args.push('-f', 'lavfi', '-t', String(total), '-i', `color=c=${CARD_COLOUR}:s=${w}x${h}:r=${FPS}`);
    filters.push(`[0:v]setsar=1,format=yuv420p[v]`);
  } else {
    visuals.forEach((visual, i) => {
      const media = mediaTypeOf(visual);
      if (media.family === 'audio') throw new Error(`a visual must be an image or a video, not ${media.contentType}`);
      // The last stretch runs long; the output's -t cuts it at the exact duration.
      const seconds = i === visuals.length - 1 ? total - share * i + 1 : share;
      const t = seconds.toFixed(3);
      if (media.family === 'image') {
        args.push(...restrictedInput(media), '-i', visual.file);
        filters.push(
          `[${i}:v]${fit},format=yuv420p,loop=loop=-1:size=1:start=0,setpts=N/${FPS}/TB,` +
            `trim=duration=${t},setpts=PTS-STARTPTS[v${i}]`,
        );
      } else {
        args.push('-stream_loop', '-1', '-t', t, ...restrictedInput(media), '-i', visual.file);
        filters.push(`[${i}:v]${fit},fps=${FPS},format=yuv420p,trim=duration=${t},setpts=PTS-STARTPTS[v${i}]`);
      }
    });
    filters.push(`${visuals.map((_, i) => `[v${i}]`).join('')}concat=n=${visuals.length}:v=1:a=0[v]`);
  }

  const audioInput = visuals.length === 0 ? 1 : visuals.length;
  if (plan.audio === 'silent') args.push('-f', 'lavfi', '-i', 'anullsrc=r=48000:cl=stereo');
  else if (plan.audio) {
    const media = mediaTypeOf(plan.audio);
    if (media.family !== 'audio') throw new Error(`the soundtrack must be audio, not ${media.contentType}`);
    args.push('-stream_loop', '-1', ...restrictedInput(media), '-i', plan.audio.file);
  }

  args.push('-filter_complex', filters.join(';'), '-map', '[v]');
  if (plan.audio) args.push('-map', `${audioInput}:a:0`, '-c:a', 'aac', '-b:a', '128k', '-ar', '48000', '-ac', '2');
  args.push(
    '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-pix_fmt', 'yuv420p', '-r', String(FPS),
    '-t', String(total), '-movflags', '+faststart', '-f', 'mp4', plan.output,
  );
  return args;
}

function mediaTypeOf(input: LocalInput): MediaType {
  const media = lookupMediaType(input.contentType);
  if (!media) throw new Error(`no demuxer for content type ${input.contentType}`);
  return media;
}

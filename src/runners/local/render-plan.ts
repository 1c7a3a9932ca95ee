/** Frames per second of every rendered video. */
export const FPS = 24;
/** The colour card shown when a job has no visual reference. */
export const CARD_COLOUR = '0x1e293b';

/** One stretch of the output: a still image held, or a video played (looped if short). */
export interface VisualInput {
  kind: 'still' | 'video';
  file: string;
}

export interface RenderPlan {
  width: number;
  height: number;
  durationSeconds: number;
  /** In order of appearance; empty renders the colour card. */
  visuals: VisualInput[];
  /** A soundtrack file, a silent track, or none. */
  audio: { file: string } | 'silent' | null;
  output: string;
}

/**
 * The ffmpeg arguments of a plan: each visual gets an equal share of the
 * duration, scaled to fit the frame (letterboxed, never stretched), and they
 * are concatenated; the soundtrack loops to the full length. Output is MP4,
 * H.264 yuv420p with the index at the front (faststart) so players start at once.
 */
export function ffmpegArgs(plan: RenderPlan): string[] {
  const { width: w, height: h, durationSeconds: total } = plan;
  const args: string[] = [];
  const filters: string[] = [];
  const visuals = plan.visuals;
  const share = total / Math.max(1, visuals.length);

  if (visuals.length === 0) {
    args.push('-f', 'lavfi', '-t', String(total), '-i', `color=c=${CARD_COLOUR}:s=${w}x${h}:r=${FPS}`);
    filters.push(`[0:v]setsar=1,format=yuv420p[v]`);
  } else {
    visuals.forEach((visual, i) => {
      // The last stretch runs long; the output's -t cuts it at the exact duration.
      const seconds = i === visuals.length - 1 ? total - share * i + 1 : share;
      const t = seconds.toFixed(3);
      if (visual.kind === 'still') args.push('-loop', '1', '-framerate', String(FPS), '-t', t, '-i', visual.file);
      else args.push('-stream_loop', '-1', '-t', t, '-i', visual.file);
      filters.push(
        `[${i}:v]scale=${w}:${h}:force_original_aspect_ratio=decrease,pad=${w}:${h}:(ow-iw)/2:(oh-ih)/2:color=black,` +
          `setsar=1,fps=${FPS},format=yuv420p,trim=duration=${t},setpts=PTS-STARTPTS[v${i}]`,
      );
    });
    filters.push(`${visuals.map((_, i) => `[v${i}]`).join('')}concat=n=${visuals.length}:v=1:a=0[v]`);
  }

  const audioInput = visuals.length === 0 ? 1 : visuals.length;
  if (plan.audio === 'silent') args.push('-f', 'lavfi', '-i', 'anullsrc=r=48000:cl=stereo');
  else if (plan.audio) args.push('-stream_loop', '-1', '-i', plan.audio.file);

  args.push('-filter_complex', filters.join(';'), '-map', '[v]');
  if (plan.audio) args.push('-map', `${audioInput}:a:0`, '-c:a', 'aac', '-b:a', '128k', '-ar', '48000', '-ac', '2');
  args.push(
    '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-pix_fmt', 'yuv420p', '-r', String(FPS),
    '-t', String(total), '-movflags', '+faststart', '-f', 'mp4', plan.output,
  );
  return args;
}

import { describe, expect, it } from 'vitest';
import { ffmpegArgs, type RenderPlan } from '../../src/runners/local/render-plan.js';

const plan = (extra: Partial<RenderPlan>): RenderPlan => ({ width: 1280, height: 720, durationSeconds: 4, visuals: [], audio: null, output: '/job/output.mp4', ...extra });

/** The options in front of each `-i`, input by input. */
function inputs(args: string[]): { options: string[]; file: string }[] {
  const out: { options: string[]; file: string }[] = [];
  let start = args.indexOf('-xerror') + 1;
  for (let i = start; i < args.length; i++) {
    if (args[i] === '-i') {
      out.push({ options: args.slice(start, i), file: args[i + 1]! });
      start = i + 2;
      i++;
    } else if (args[i] === '-filter_complex') break;
  }
  return out;
}

describe('render plan (pure)', () => {
  it('opens every reference as a plain file with the demuxer of its verified type, never probing', () => {
    const args = ffmpegArgs(
      plan({
        visuals: [
          { file: '/job/ref-0.png', contentType: 'image/png' },
          { file: '/job/ref-1.jpg', contentType: 'image/jpeg' },
          { file: '/job/ref-2.webp', contentType: 'image/webp' },
          { file: '/job/ref-3.gif', contentType: 'image/gif' },
          { file: '/job/ref-4.mp4', contentType: 'video/mp4' },
          { file: '/job/ref-5.webm', contentType: 'video/webm' },
        ],
        audio: { file: '/job/ref-6.mp3', contentType: 'audio/mpeg' },
      }),
    );
    const byFile = Object.fromEntries(inputs(args).map((i) => [i.file, i.options]));
    expect(byFile['/job/ref-0.png']).toEqual(['-protocol_whitelist', 'file', '-f', 'png_pipe']);
    expect(byFile['/job/ref-1.jpg']).toEqual(['-protocol_whitelist', 'file', '-f', 'jpeg_pipe']);
    expect(byFile['/job/ref-2.webp']).toEqual(['-protocol_whitelist', 'file', '-f', 'webp_pipe']);
    expect(byFile['/job/ref-3.gif']).toEqual(['-protocol_whitelist', 'file', '-f', 'gif']);
    expect(byFile['/job/ref-4.mp4']).toEqual(['-stream_loop', '-1', '-t', '0.667', '-protocol_whitelist', 'file', '-f', 'mov']);
    expect(byFile['/job/ref-5.webm']).toEqual(['-stream_loop', '-1', '-t', '1.667', '-protocol_whitelist', 'file', '-f', 'matroska']);
    expect(byFile['/job/ref-6.mp3']).toEqual(['-stream_loop', '-1', '-protocol_whitelist', 'file', '-f', 'mp3']);
    expect(Object.keys(byFile)).toHaveLength(7);
  });

  it('decodes a still once and holds it with the loop filter, and stops at the first decoding error', () => {
    const args = ffmpegArgs(plan({ visuals: [{ file: '/job/ref-0.png', contentType: 'image/png' }] }));
    expect(args[0]).toBe('-xerror');
    // No input-side looping of a still: a still whose data cannot be decoded would loop forever.
    expect(inputs(args)[0]!.options).not.toContain('-stream_loop');
    const graph = args[args.indexOf('-filter_complex') + 1]!;
    expect(graph).toBe(
      '[0:v]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p,' +
        'loop=loop=-1:size=1:start=0,setpts=N/24/TB,trim=duration=5.000,setpts=PTS-STARTPTS[v0];[v0]concat=n=1:v=1:a=0[v]',
    );
  });

  it('renders the colour card and a silent track from lavfi when there are no references', () => {
    const args = ffmpegArgs(plan({ audio: 'silent' }));
    expect(inputs(args)).toEqual([
      { options: ['-f', 'lavfi', '-t', '4'], file: 'color=c=0x1e293b:s=1280x720:r=24' },
      { options: ['-f', 'lavfi'], file: 'anullsrc=r=48000:cl=stereo' },
    ]);
    expect(args.slice(args.indexOf('-map'), args.indexOf('-map') + 4)).toEqual(['-map', '[v]', '-map', '1:a:0']);
    expect(args.slice(-9)).toEqual(['-r', '24', '-t', '4', '-movflags', '+faststart', '-f', 'mp4', '/job/output.mp4']);
  });

  it('refuses a type outside the table, and audio among visuals or video as a soundtrack', () => {
    expect(() => ffmpegArgs(plan({ visuals: [{ file: '/job/x.svg', contentType: 'image/svg+xml' }] }))).toThrow(/no demuxer/);
    expect(() => ffmpegArgs(plan({ visuals: [{ file: '/job/x.mp3', contentType: 'audio/mpeg' }] }))).toThrow(/image or a video/);
    expect(() => ffmpegArgs(plan({ audio: { file: '/job/x.mp4', contentType: 'video/mp4' } }))).toThrow(/must be audio/);
  });
});

import { describe, expect, it } from 'vitest';

import type { Out } from '../../src/cli/context.js';
import { formatBytes, startProgress } from '../../src/cli/progress.js';

/** An Out whose stderr is a terminal when `columns` is given: what was written to it, raw, and the lines. */
function fakeOut(columns?: number) {
  const written: string[] = [];
  const lines: string[] = [];
  const out: Out = {
    stdout: () => {},
    stderr: (line) => lines.push(line),
    ...(columns !== undefined ? { terminal: { columns, write: (text: string) => written.push(text) } } : {}),
  };
  return { out, written, lines };
}

describe('the progress renderer', () => {
  it('on a terminal: a bar redrawn in place, only when it changes, ended by a newline', () => {
    const { out, written, lines } = fakeOut(80);
    const bar = startProgress(out, 'clip.mp4', 4 * 1024 * 1024);
    bar.update(1024 * 1024, 4 * 1024 * 1024);
    bar.update(1024 * 1024 + 1, 4 * 1024 * 1024); // same percent: no redraw
    bar.done();
    expect(lines).toEqual([]);
    expect(written).toEqual([
      `\rclip.mp4 [${'-'.repeat(30)}]   0%  0 B / 4.0 MiB\x1b[K`,
      `\rclip.mp4 [${'#'.repeat(8)}${'-'.repeat(22)}]  25%  1.0 MiB / 4.0 MiB\x1b[K`,
      `\rclip.mp4 [${'#'.repeat(30)}] 100%  4.0 MiB / 4.0 MiB\x1b[K`,
      '\n',
    ]);
  });

  it('fits a narrow terminal: the label is cut from the front, the bar shrinks', () => {
    const { out, written } = fakeOut(50);
    startProgress(out, 'a/very/long/directory/name/of/some/kind/clip.mp4', 100).update(50, 100);
    const last = written.at(-1)!;
    expect(last.replace('\x1b[K', '').length - 1).toBeLessThan(50);
    expect(last).toMatch(/^\r….*clip\.mp4 \[#{5}-{5}\]  50%/);
  });

  it('a size-less pseudo-terminal (0 columns) draws at 80', () => {
    const { out, written } = fakeOut(0);
    startProgress(out, 'x.png', 10).done();
    expect(written.at(-2)).toBe(`\rx.png [${'#'.repeat(30)}] 100%  10 B / 10 B\x1b[K`);
  });

  it('a failed transfer ends the line where it stood', () => {
    const { out, written } = fakeOut(80);
    const bar = startProgress(out, 'x.png', 10);
    bar.update(3, 10);
    bar.fail();
    expect(written.at(-2)).toContain(' 30% ');
    expect(written.at(-1)).toBe('\n');
  });

  it('without a terminal: a start line, then one line per tenth passed, the highest only', () => {
    const { out, lines } = fakeOut();
    const progress = startProgress(out, 'song.mp3', 1000);
    for (const loaded of [0, 50, 99, 100, 410, 420, 990]) progress.update(loaded, 1000);
    progress.done();
    expect(lines).toEqual(['song.mp3: 0% of 1000 B', 'song.mp3: 10%', 'song.mp3: 40%', 'song.mp3: 90%', 'song.mp3: 100%']);
  });

  it('bytes a retry counts twice never show more than 100 %', () => {
    const { out, lines } = fakeOut();
    const progress = startProgress(out, 'x', 100);
    progress.update(250, 100);
    progress.done();
    expect(lines).toEqual(['x: 0% of 100 B', 'x: 100%']);
  });

  it('formats sizes in binary units', () => {
    expect([0, 1023, 1024, 1536, 5 * 1024 ** 3].map(formatBytes)).toEqual(['0 B', '1023 B', '1.0 KiB', '1.5 KiB', '5.0 GiB']);
  });
});

import type { Out, Terminal } from './context.js';

/** One transfer's progress, drawn on stderr. */
export interface Progress {
  /** Bytes sent so far, of `total`. */
  update(loaded: number, total: number): void;
  /** The transfer completed: shown at 100 %, its line ended. */
  done(): void;
  /** The transfer stopped short: its line ended where it stood (the error is reported by the caller). */
  fail(): void;
}

/**
 * A bar redrawn in place when stderr is a terminal; otherwise plain lines, at
 * most one per 10 %, that read well in a log file or CI output.
 */
export function startProgress(out: Out, label: string, total: number): Progress {
  return out.terminal ? new ProgressBar(out.terminal, label, total) : new ProgressLines(out.stderr, label, total);
}

/** Whole percent done, 100 for an empty transfer; bytes counted twice by a retry never make it pass 100. */
function percentOf(loaded: number, total: number): number {
  if (total <= 0) return 100;
  return Math.min(100, Math.floor((Math.max(0, loaded) / total) * 100));
}

/** 1023 B, 12.3 KiB, 4.0 MiB, … */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

const CLEAR_TO_END_OF_LINE = '\x1b[K';

/** `label [##########----------]  50%  1.2 MiB / 2.4 MiB`, rewritten after a carriage return. */
export class ProgressBar implements Progress {
  private loaded = 0;
  private drawn = '';

  constructor(
    private readonly terminal: Terminal,
    private readonly label: string,
    private total: number,
  ) {
    this.draw();
  }

  update(loaded: number, total: number): void {
    this.loaded = Math.min(loaded, total);
    this.total = total;
    this.draw();
  }

  done(): void {
    this.update(this.total, this.total);
    this.terminal.write('\n');
  }

  fail(): void {
    this.terminal.write('\n');
  }

  /** Writes only when the text changed: a 64 KiB chunk of a large file moves nothing on screen. */
  private draw(): void {
    const percent = percentOf(this.loaded, this.total);
    const figures = `${String(percent).padStart(3)}%  ${formatBytes(this.loaded)} / ${formatBytes(this.total)}`;
    // A pseudo-terminal without a size reports 0 columns.
    const columns = this.terminal.columns || 80;
    // Room for the label first, the bar gets what is left (10 to 30 cells); a long label is cut from the front.
    const barWidth = Math.max(10, Math.min(30, columns - 1 - figures.length - 4 - this.label.length));
    const labelRoom = Math.max(8, columns - 1 - figures.length - 4 - barWidth);
    const label = this.label.length > labelRoom ? `…${this.label.slice(-(labelRoom - 1))}` : this.label;
    const filled = Math.round((percent / 100) * barWidth);
    const text = `${label} [${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${figures}`;
    if (text === this.drawn) return;
    this.drawn = text;
    this.terminal.write(`\r${text}${CLEAR_TO_END_OF_LINE}`);
  }
}

/** `label: 0% of 2.4 MiB`, then `label: 10%`, `label: 20%`, … `label: 100%`: a line each time a tenth is passed. */
export class ProgressLines implements Progress {
  private shown = 0;

  constructor(
    private readonly line: (text: string) => void,
    private readonly label: string,
    private total: number,
  ) {
    line(`${label}: 0% of ${formatBytes(total)}`);
  }

  update(loaded: number, total: number): void {
    this.total = total;
    // The highest tenth passed: a jump from 0 to 100 % is one line, not ten.
    const tenth = Math.floor(percentOf(loaded, total) / 10) * 10;
    if (tenth <= this.shown) return;
    this.shown = tenth;
    this.line(`${this.label}: ${tenth}%`);
  }

  done(): void {
    this.update(this.total, this.total);
  }

  fail(): void {
    // Nothing to end: each line is whole. The caller says what went wrong.
  }
}

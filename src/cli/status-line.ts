import type { Out } from './context.js';

/** Where a long wait stands, on stderr. */
export interface StatusLine {
  /** The state now (`generating`, `completed`, …). */
  update(state: string): void;
  /** The wait is over; the line is ended. */
  end(): void;
}

/**
 * On a terminal, one line redrawn in place with the seconds waited, ticking
 * every second between polls; otherwise a plain line each time the state
 * changes (no clock: a log gets no line per poll).
 */
export function startStatusLine(out: Out, label: string, initial: string): StatusLine {
  const { terminal } = out;
  if (!terminal) {
    let last = initial;
    out.stderr(`${label}: ${initial}`);
    return {
      update(state) {
        if (state !== last) out.stderr(`${label}: ${state}`);
        last = state;
      },
      end() {},
    };
  }
  const started = Date.now();
  let state = initial;
  const draw = () => terminal.write(`\r${label}: ${state} (${Math.round((Date.now() - started) / 1000)} s)\x1b[K`);
  const ticker = setInterval(draw, 1000);
  // The ticker never keeps the process alive on its own.
  ticker.unref();
  draw();
  return {
    update(next) {
      state = next;
      draw();
    },
    end() {
      clearInterval(ticker);
      draw();
      terminal.write('\n');
    },
  };
}

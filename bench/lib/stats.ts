/** Median and spread of a few rounds: the figures the bench publishes. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  rounds: number[];
}

export function summarise(values: number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length === 0 ? NaN : sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0] ?? NaN, max: sorted[sorted.length - 1] ?? NaN, rounds: values };
}

/** "1234 (1100–1300)": median with the range of the rounds. */
export function fmt(s: Summary, digits = 0, unit = ''): string {
  const f = (n: number) => n.toFixed(digits);
  return `${f(s.median)}${unit} (${f(s.min)}–${f(s.max)})`;
}

export function medianOf(values: number[]): number {
  return summarise(values).median;
}

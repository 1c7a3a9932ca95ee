import { InvalidArgumentError } from 'commander';

/** A repeatable option's values, in the order given (`--scope a --scope b`). */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** A whole number ≥ 1; anything else is a usage error naming the option. */
export function positiveInteger(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError('must be a whole number of 1 or more');
  return Number(value);
}

/** A number of seconds > 0 (fractions allowed). */
export function positiveSeconds(value: string): number {
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds <= 0) throw new InvalidArgumentError('must be a number of seconds greater than 0');
  return seconds;
}

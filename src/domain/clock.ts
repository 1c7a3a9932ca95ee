/**
 * Where the time comes from, so that what depends on it (the cleanup job, the
 * retention policy) can be told another: tests move a clock instead of sleeping.
 */
export interface Clock {
  now(): Date;
}

/** The machine's clock. */
export const systemClock: Clock = { now: () => new Date() };

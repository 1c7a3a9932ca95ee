import { describe, expect, it } from 'vitest';
import { abortable } from '../../../src/domain/generations/worker.js';

/**
 * A worker stopping while a job reads its row hands the runner an already aborted signal; the
 * runner then rejects with the stop's reason. That rejection must be handled, or Node ends the
 * process on it (an unhandled rejection): the SIGTERM hand-back flake of the BullMQ roles test.
 */
describe('abortable', () => {
  it('handles the work of an already aborted signal, which rejects later with the same reason', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const controller = new AbortController();
      const reason = new Error('server stopping');
      controller.abort(reason);
      const work = new Promise<never>((_, reject) => setTimeout(() => reject(reason), 10));
      await expect(abortable(work, controller.signal)).rejects.toBe(reason);
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('rejects at the abort, before slow work settles, and resolves with the work otherwise', async () => {
    const controller = new AbortController();
    const slow = new Promise<string>((resolve) => setTimeout(() => resolve('late'), 200));
    const pending = abortable(slow, controller.signal);
    controller.abort(new Error('stop'));
    await expect(pending).rejects.toThrow('stop');
    await expect(abortable(Promise.resolve('done'), new AbortController().signal)).resolves.toBe('done');
  });
});

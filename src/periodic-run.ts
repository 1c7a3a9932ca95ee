/**
 * A job run now and then every `intervalMs`, never two runs at once (a run still going when
 * the next is due is not doubled); a failed run is handed to `onError`, never thrown. The
 * timer does not keep the process alive. For the sweeps that run where jobs run.
 */
export class PeriodicRun {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;

  constructor(
    private readonly run: () => Promise<unknown>,
    private readonly intervalMs: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  start(): void {
    if (this.timer !== null) return;
    const tick = () => {
      if (this.running !== null) return;
      this.running = this.run()
        .catch(this.onError)
        .finally(() => (this.running = null));
    };
    this.timer = setInterval(tick, this.intervalMs);
    this.timer.unref();
    tick();
  }

  /** Stops the timer and waits for a run in progress. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}

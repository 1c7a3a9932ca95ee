/**
 * Runs `pump` one at a time, however often it is woken: a wake-up during a
 * run asks for exactly one more run after it, so a burst of wake-ups (NOTIFYs,
 * polls, finished jobs) costs one extra pass, not one pass each. Used by the
 * database queue and the webhook dispatcher, which both claim work in a loop.
 */
export class CoalescingPump {
  private running: Promise<void> | null = null;
  private again = false;

  /** `pump` must not throw (it handles its own failures); `enabled` is checked at each wake-up. */
  constructor(
    private readonly pump: () => Promise<void>,
    private readonly enabled: () => boolean,
  ) {}

  wake(): void {
    if (!this.enabled()) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pump().finally(() => {
      this.running = null;
      if (this.again) {
        this.again = false;
        this.wake();
      }
    });
  }

  /** Resolves once the run in progress (if any) has ended. */
  async idle(): Promise<void> {
    await this.running;
  }
}

/**
 * A clock a test moves by hand: `now` for the app (ContextDeps.clock) and
 * the live hub, `wakeAt` for the hub's wake-ups (a credential's end), which
 * `advance` runs once the clock has reached them. Starts at the real time,
 * so what PostgreSQL stamps and what the app writes by this clock agree
 * until the test moves it.
 */
export class ManualClock {
  private time: number;
  private timers: { at: number; fn: () => void }[] = [];

  constructor(start = Date.now()) {
    this.time = start;
  }

  readonly now = (): number => this.time;

  readonly wakeAt = (at: number, fn: () => void): (() => void) => {
    const timer = { at, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  };

  /** Moves the clock `ms` forward and runs the wake-ups now due. */
  advance(ms: number): void {
    this.time += ms;
    const due = this.timers.filter((t) => t.at <= this.time);
    this.timers = this.timers.filter((t) => t.at > this.time);
    for (const t of due) t.fn();
  }

  /** Wake-ups waiting. */
  get pending(): number {
    return this.timers.length;
  }
}

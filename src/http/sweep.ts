/**
 * One timer for the keep-alives of many connections (src/http/ws-keepalive.ts
 * for the WebSockets, src/http/sse-streams.ts for the SSE streams), in
 * slices: the period is cut into `slices` turns, a connection belongs to
 * one slice (the one with the fewest connections when it was added), and
 * each turn visits only its slice. Connections opened together (a bench's
 * 1,000 streams, every client of a replica reconnecting after a restart)
 * are visited a turn apart, not in one burst every period that a request
 * waits behind (docs/live-updates.md, "Sixth round" and "Eleventh round").
 * A connection's first visit comes at its slice's first turn, at most one
 * period after it was added. The timer runs only while a connection is in.
 */
export interface SweepOptions {
  /** Turns per period (default: one every 100 ms, at least 1). */
  slices?: number;
  /** Runs `turn` every `everyMs`; returns the stop. Default setInterval (unref'd); tests turn the slices by hand. */
  schedule?: (turn: () => void, everyMs: number) => () => void;
}

const intervalOf = (turn: () => void, everyMs: number) => {
  const timer = setInterval(turn, everyMs);
  timer.unref();
  return () => clearInterval(timer);
};

export class Sweep<T> {
  private readonly slices: Set<T>[];
  private readonly schedule: NonNullable<SweepOptions["schedule"]>;
  private next = 0;
  private count = 0;
  private stop: (() => void) | undefined;

  constructor(
    private readonly periodMs: number,
    private readonly visit: (item: T) => void,
    options: SweepOptions = {},
  ) {
    const count = Math.max(1, options.slices ?? Math.floor(periodMs / 100));
    this.slices = Array.from({ length: count }, () => new Set<T>());
    this.schedule = options.schedule ?? intervalOf;
  }

  /** Connections in the sweep. */
  get size(): number {
    return this.count;
  }

  /** Visits `item` once a period from now on; returns its removal (idempotent). */
  add(item: T): () => void {
    let slice = this.slices[0]!;
    for (const s of this.slices) if (s.size < slice.size) slice = s;
    slice.add(item);
    this.count++;
    this.stop ??= this.schedule(() => this.turn(), this.periodMs / this.slices.length);
    return () => {
      if (!slice.delete(item)) return;
      if (--this.count === 0) this.close();
    };
  }

  /** Stops the timer (a later add starts it again). */
  close(): void {
    this.stop?.();
    this.stop = undefined;
  }

  private turn(): void {
    const slice = this.slices[this.next]!;
    this.next = (this.next + 1) % this.slices.length;
    for (const item of slice) this.visit(item);
  }
}

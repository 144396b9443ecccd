/**
 * The waiters of a tier pool by lane (a tenant), served round-robin over
 * the lanes (docs/request-path.md, "Fairness within a tier"): each turn
 * goes to the first waiter of the lane at the front, and that lane moves to
 * the back; a lane new to the queue joins at the back. So a tenant with N
 * waiters delays another tenant's request by one turn, not by N, and while
 * every tenant has one waiter at most the order is first come first served.
 *
 * A lane may be parked (its tenant holds as many connections as it may):
 * its waiters keep their places in it but it takes no turn until resumed.
 * Every operation is O(1) but `remove`, which scans its own lane (a waiter
 * that timed out).
 */
export class LaneQueue<T> {
  private readonly lanes = new Map<string, T[]>();
  /** Lanes with waiters that may take a turn, in turn order (a Set keeps insertion order: delete + add moves one to the back). */
  private readonly turns = new Set<string>();
  private count = 0;

  /** Waiters, parked lanes' included. */
  get length(): number {
    return this.count;
  }

  /** Whether some waiter may take a turn now. */
  get ready(): boolean {
    return this.turns.size > 0;
  }

  /** Queues `item` at the back of its lane; a new lane takes turns after the lanes waiting now, unless `parked`. */
  push(lane: string, item: T, parked: boolean): void {
    const waiting = this.lanes.get(lane);
    if (waiting) waiting.push(item);
    else {
      this.lanes.set(lane, [item]);
      if (!parked) this.turns.add(lane);
    }
    this.count++;
  }

  /** The first waiter of the lane whose turn it is (that lane goes to the back), or undefined when no lane may take one. */
  shift(): { lane: string; item: T } | undefined {
    const next = this.turns.values().next();
    if (next.done) return undefined;
    const lane = next.value;
    const waiting = this.lanes.get(lane)!;
    const item = waiting.shift()!;
    this.count--;
    this.turns.delete(lane);
    if (waiting.length) this.turns.add(lane);
    else this.lanes.delete(lane);
    return { lane, item };
  }

  /** Takes `item` out of its lane; false if it was not there. */
  remove(lane: string, item: T): boolean {
    const waiting = this.lanes.get(lane);
    const i = waiting ? waiting.indexOf(item) : -1;
    if (i < 0) return false;
    waiting!.splice(i, 1);
    this.count--;
    if (!waiting!.length) {
      this.lanes.delete(lane);
      this.turns.delete(lane);
    }
    return true;
  }

  /** The lane takes no turn until `resume` (its tenant is at its cap). */
  park(lane: string): void {
    this.turns.delete(lane);
  }

  /** A parked lane with waiters takes turns again, after the lanes waiting now. */
  resume(lane: string): void {
    if (this.lanes.has(lane) && !this.turns.has(lane)) this.turns.add(lane);
  }

  /** Empties the queue and returns every waiter. */
  drain(): T[] {
    const all = [...this];
    this.lanes.clear();
    this.turns.clear();
    this.count = 0;
    return all;
  }

  *[Symbol.iterator](): Iterator<T> {
    for (const waiting of this.lanes.values()) yield* waiting;
  }
}

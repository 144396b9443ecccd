/**
 * The waiters of a tier pool by lane (a tenant), served by tenant
 * (docs/request-path.md, "Fairness within a tier"): first the lanes of
 * tenants that hold no connection of the pool, in the order they came to
 * be so; then the others round-robin, each turn to the first waiter of the
 * lane at the front, which then moves to the back. So a tenant with many
 * waiters (and connections) never delays another tenant's first request
 * by more than the next connection given back, and two busy tenants take
 * turns.
 *
 * A lane may be parked (its tenant holds as many connections as it may):
 * its waiters keep their places in it but it takes no turn until resumed.
 * Every operation is O(1) but `remove`, which scans its own lane (a waiter
 * that timed out).
 */
export type Standing = "idle" | "busy" | "capped";

export class LaneQueue<T> {
  private readonly lanes = new Map<string, T[]>();
  // Sets keep insertion order: delete + add moves a lane to the back.
  /** Lanes with waiters whose tenant holds no connection: served first, in order. */
  private readonly idle = new Set<string>();
  /** The other lanes with waiters that may be served, in turn order. */
  private readonly turns = new Set<string>();
  private count = 0;

  /** Waiters, parked lanes' included. */
  get length(): number {
    return this.count;
  }

  /** Whether some waiter may be served now. */
  get ready(): boolean {
    return this.idle.size > 0 || this.turns.size > 0;
  }

  /** Queues `item` at the back of its lane; `standing`: its tenant holds no connection, some, or all it may. */
  push(lane: string, item: T, standing: Standing): void {
    const waiting = this.lanes.get(lane);
    if (waiting) waiting.push(item);
    else {
      this.lanes.set(lane, [item]);
      if (standing !== "capped") (standing === "idle" ? this.idle : this.turns).add(lane);
    }
    this.count++;
  }

  /** The next waiter to serve (its lane then takes turns at the back), or undefined when no lane may be served. */
  shift(): { lane: string; item: T } | undefined {
    const next = (this.idle.size ? this.idle : this.turns).values().next();
    if (next.done) return undefined;
    const lane = next.value;
    const waiting = this.lanes.get(lane)!;
    const item = waiting.shift()!;
    this.count--;
    this.idle.delete(lane);
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
      this.idle.delete(lane);
      this.turns.delete(lane);
    }
    return true;
  }

  /** The lane takes no turn until `resume` (its tenant is at its cap). */
  park(lane: string): void {
    this.idle.delete(lane);
    this.turns.delete(lane);
  }

  /** A connection of the lane's tenant was given back: a parked lane takes turns again, one whose tenant now holds none is served first. */
  resume(lane: string, holdsNone: boolean): void {
    if (!this.lanes.has(lane) || this.idle.has(lane)) return;
    if (holdsNone) {
      this.turns.delete(lane);
      this.idle.add(lane);
    } else this.turns.add(lane);
  }

  /** Empties the queue and returns every waiter. */
  drain(): T[] {
    const all = [...this];
    this.lanes.clear();
    this.idle.clear();
    this.turns.clear();
    this.count = 0;
    return all;
  }

  *[Symbol.iterator](): Iterator<T> {
    for (const waiting of this.lanes.values()) yield* waiting;
  }
}

import type { ExecutionResult } from "graphql";

/**
 * One event's node as handed to the streams of its tenant that accept it
 * (docs/live-updates.md, "Delivery" point 5 and "Eighth round"): the same
 * object for all of them, so subscribers whose answers are provably equal
 * (src/http/use-live-delivery.ts decides which: same document, variables,
 * kind of caller and whatever else the selection can depend on) share one
 * execution of their selection, and its result object, for this event.
 *
 * A Delivery belongs to one read of one tenant's events (tenant-streams.ts
 * makes it), so a class never spans tenants.
 */
export class Delivery {
  /** By class key: the execution of the class's first subscriber to get here; null when it could not be shared. */
  readonly results = new Map<string, Promise<ExecutionResult | null>>();
  #sharing = true;
  constructor(readonly node: object) {}

  /** Whether a class's result may still be kept for the class's later subscribers. */
  get sharing(): boolean {
    return this.#sharing;
  }

  /**
   * The event's fan-out is over (the loop turned after its last stream was
   * handed it): its results are let go, and a stream that takes the event
   * later (a slow consumer, up to its buffer) executes for itself instead
   * of keeping every class's result alive (review, memory).
   */
  finish(): void {
    this.#sharing = false;
    this.results.clear();
  }

  /** The node for one execution: its own copy (resolvers may add to the object they are given). */
  copy(): object {
    return { ...this.node };
  }
}

/** The stream a subscription's context opened (one per context: a stream is one operation). */
const streams = new WeakMap<object, AsyncIterator<unknown>>();

export function bindStream(ctx: object, stream: AsyncIterator<unknown>): void {
  streams.set(ctx, stream);
}

/** The live stream the subscription of `ctx` opened, if it opened one. */
export function streamOf(ctx: object): AsyncIterator<unknown> | undefined {
  return streams.get(ctx);
}

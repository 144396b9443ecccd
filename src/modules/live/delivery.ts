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
  constructor(readonly node: object) {}

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

/**
 * Live events (SPEC section 10, subscriptions): what a committed change tells
 * the subscribers of its tenant. An event names the changed node and nothing
 * of its data: every subscriber re-reads the node through its own
 * tenant-scoped handle, so a payload can never show a subscriber more than
 * its own query would.
 */
export type LiveNodeType = "Deployment" | "Workflow" | "AuditLogEntry";

export type LiveChange =
  /** A node was created or changed. `projectId` only narrows which streams look: each re-reads the node. */
  | { type: LiveNodeType; id: string; projectId?: string | null }
  /** Something an open stream's authorization rests on changed (membership, key, tenant status): re-check. */
  | { type: "access" };

/** On the wire: the change and its commit time (ms since epoch, for delivery latency). */
export type LiveEvent = LiveChange & { at: number };

/** The pub/sub topic of a tenant: under the tenant's key namespace (one Redis Cluster slot). */
export const liveTopic = (tenantId: string) => `t:{${tenantId}}:live`;

/** Anything that publishes committed changes (the LiveHub of the process). */
export interface LivePublisher {
  publish(tenantId: string, changes: LiveChange[]): void;
}

/** What the request path needs of the live-updates hub (src/modules/live/hub.ts). */
export interface LiveUpdates extends LivePublisher {
  /** Open subscription streams of a tenant, on every replica. */
  count(tenantId: string): Promise<number>;
}

/**
 * The outbox of a transaction: changes registered while it runs, published
 * only once it has committed (and dropped when it rolls back), so no
 * subscriber is told of a change it cannot read yet or that never happened.
 * Keyed by the transaction handle the services write through.
 */
const outboxes = new WeakMap<object, { tenantId: string; changes: LiveChange[] }[]>();

/** Registers a change of `tenantId` to publish when `tx` commits. */
export function publishAfterCommit(tx: object, tenantId: string, change: LiveChange): void {
  const box = outboxes.get(tx);
  // A transaction not opened through withOutbox (a script, a seed): nobody
  // listens to it, and nothing is published.
  if (!box) return;
  box.push({ tenantId, changes: [change] });
}

/**
 * Runs a transaction (`run` receives `track`, to call with the transaction
 * handle as soon as it exists) and publishes what it registered after it
 * committed.
 */
export async function withOutbox<T>(publisher: LivePublisher | undefined, run: (track: (tx: object) => void) => Promise<T>): Promise<T> {
  if (!publisher) return run(() => {});
  const box: { tenantId: string; changes: LiveChange[] }[] = [];
  const result = await run((tx) => outboxes.set(tx, box));
  const byTenant = new Map<string, LiveChange[]>();
  for (const { tenantId, changes } of box) {
    const list = byTenant.get(tenantId) ?? [];
    list.push(...changes);
    byTenant.set(tenantId, list);
  }
  for (const [tenantId, changes] of byTenant) publisher.publish(tenantId, changes);
  return result;
}

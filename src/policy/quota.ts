import type { QuotaResource } from "../generated/prisma/enums.ts";
import { quotaExceeded, serviceUnavailable } from "../errors.ts";
import { isStoreUnavailable, tenantKey } from "../infra/store.ts";
import type { RequestStore, TenantKeyOf } from "../tenancy/context-types.ts";
import type { TenantInfo } from "../tenancy/directory.ts";
import type { ScopedTx } from "../tenancy/scoped-client.ts";
import { countUsage as countRows, lockCountQuota as lockRows, type CountQuery, type CountResource } from "../db/count-quota.ts";

/**
 * Quotas (SPEC section 6). Two kinds, with different atomicity tools:
 *
 *  - count-based (PROJECTS, SEATS): the rows themselves are the count. The
 *    check runs inside the transaction that inserts, under a transaction-level
 *    advisory lock per (tenant, resource), so concurrent inserts are
 *    serialized: each counts what is committed plus its own row.
 *  - window-based (DEPLOYMENTS_PER_HOUR, WORKFLOWS_PER_HOUR, and the rate
 *    limiter's API_REQUESTS_PER_MINUTE): a fixed-window counter in the shared
 *    store, incremented atomically before the mutation runs and refunded when
 *    the increment overshoots or the mutation fails. A refund can make a
 *    concurrent request fail that would have fit, never the other way round.
 *    While the store cannot answer, these fail closed: SERVICE_UNAVAILABLE
 *    (503 + Retry-After) for the mutations they guard, nothing else
 *    (docs/degraded-modes.md). A refund that cannot reach the store leaves
 *    the window over-counted, never under.
 */

export type { CountResource };

export const COUNT_RESOURCES: ReadonlySet<QuotaResource> = new Set(["PROJECTS", "SEATS"]);
export const isCountResource = (r: QuotaResource): r is CountResource => COUNT_RESOURCES.has(r);

export const HOUR_MS = 3_600_000;
export const MINUTE_MS = 60_000;

/** The start of the window of `windowMs` containing `now` (the app's clock, ms epoch). */
export const windowStart = (windowMs: number, now: number) => Math.floor(now / windowMs) * windowMs;

/** The store key of a window-based quota for the window containing `now`. */
export const quotaWindowKey = (tenantId: string, resource: QuotaResource, now: number) =>
  tenantKey(tenantId, "q", resource, String(Math.floor(now / HOUR_MS)));


export function limitOf(tenant: TenantInfo, resource: QuotaResource): number | null {
  const limit = tenant.limits[resource];
  return limit === undefined ? null : limit;
}

/** A Prisma transaction as the positional query of src/db/count-quota.ts. */
const rawQuery =
  (tx: Pick<ScopedTx, "$queryRawUnsafe">): CountQuery =>
  (sql, params) =>
    tx.$queryRawUnsafe(sql, ...params);

export const countUsage = (tx: Pick<ScopedTx, "$queryRawUnsafe">, tenantId: string, resource: CountResource) => countRows(rawQuery(tx), tenantId, resource);

/**
 * Checks a count-based quota inside the inserting transaction.
 * `alreadyInserted`: the transaction has already inserted the `cost` new
 * rows (they are part of the count), so the check passes while the count
 * stays within the limit. Otherwise the check runs before the insert.
 */
export async function checkCountQuota(
  tx: Pick<ScopedTx, "$executeRawUnsafe" | "$queryRawUnsafe">,
  tenant: TenantInfo,
  resource: CountResource,
  cost: number,
  alreadyInserted: boolean,
): Promise<void> {
  const limit = limitOf(tenant, resource);
  if (limit === null) return;
  // $executeRaw: the lock answers a void column, which Prisma does not read as rows.
  await lockRows((sql, params) => tx.$executeRawUnsafe(sql, ...params), tenant.id, resource);
  // A fresh snapshot after the lock (READ COMMITTED): it sees every row
  // committed by whoever held the lock before.
  const count = await countUsage(tx, tenant.id, resource);
  const used = alreadyInserted ? count - cost : count;
  if (used + cost > limit) throw quotaExceeded(resource, limit, Math.max(0, used), cost);
}

export interface WindowReservation {
  /** Gives the reservation back (the mutation failed). Idempotent. */
  refund(): Promise<void>;
}

/**
 * Reserves `cost` of a window-based quota: one atomic increment in the shared
 * store. Over the limit the increment is taken back and QUOTA_EXCEEDED thrown.
 */
export async function reserveWindowQuota(
  store: Pick<RequestStore, "hit">,
  tenant: TenantInfo,
  resource: QuotaResource,
  cost: number,
  now: number,
): Promise<WindowReservation | null> {
  const limit = limitOf(tenant, resource);
  if (limit === null) return null;
  const key = (tenantId: string) => quotaWindowKey(tenantId, resource, now);
  let count: number;
  try {
    ({ count } = await store.hit(key, HOUR_MS, cost));
  } catch (err) {
    // Nobody can tell how much of the window is used: refuse rather than guess.
    if (isStoreUnavailable(err)) throw serviceUnavailable("redis");
    throw err;
  }
  let refunded = false;
  const refund = async () => {
    if (refunded) return;
    refunded = true;
    await store.hit(key, HOUR_MS, -cost).catch((err: unknown) => {
      if (!isStoreUnavailable(err)) throw err;
    });
  };
  if (count > limit) {
    await refund();
    throw quotaExceeded(resource, limit, Math.max(0, count - cost), cost);
  }
  return { refund };
}

export async function windowUsage(store: Pick<RequestStore, "get">, key: TenantKeyOf): Promise<number> {
  const value = await store.get(key);
  const n = value === null ? 0 : Number(value);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

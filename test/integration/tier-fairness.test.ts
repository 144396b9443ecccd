import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import pg from "pg";
import { APP_ROLE, createPool } from "../../src/db/clients.ts";
import { connectFor } from "../../src/db/tier-pool.ts";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { TenantDb } from "../../src/tenancy/tenant-db.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

/**
 * Fairness within a tier (src/db/lane-queue.ts, src/db/time-share.ts,
 * docs/request-path.md "Fairness within a tier"): the waiters of a tier pool
 * are served by tenant, so one FREE tenant's backlog of slow queries does not
 * make another FREE tenant's request wait behind it. "Slow queries" wait on
 * advisory locks the test holds, one lock each, so the test ends them one at
 * a time; the gate's deadlines run on a manual clock that does not move.
 * Nothing is asserted about elapsed time.
 */
const LOCK = 4_242_031;
const BACKLOG = 4;
const FREE = 2;
const DASHBOARD = `{ tenant { slug } projects(first: 2) { totalCount } }`;

let t: TestApp;
let ids: Record<string, string>;
let owner: pg.Client;
const clock = new ManualClock();

beforeAll(async () => {
  t = await createTestApp({ pools: { FREE, PRO: 2, ENTERPRISE: 2, platform: 2, live: 1 }, timeShares: { plans: {}, windowMs: 1000, clock } });
  ids = await tenantIdsBySlug(t);
  owner = new pg.Client({ connectionString: t.db.url });
  await owner.connect();
}, 120_000);

afterAll(async () => {
  await owner?.end();
  await t?.close();
});

/** Backends waiting for one of the test's locks. */
async function waitingOnLocks(): Promise<number> {
  const { rows } = await owner.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid BETWEEN $1 AND $2 AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [LOCK, LOCK + 99],
  );
  return rows[0]!.n;
}

/** A request of acme's on FREE's pool (acme taken for a FREE tenant: the pool is the plan's) whose statement waits for lock `LOCK + i`. */
function slowQuery(i: number) {
  const db = new TenantDb(t.clients.app, { tenantId: ids.acme!, plan: "FREE", statementTimeoutMs: 0, mode: "request" });
  return db.queryRaw(Prisma.sql`SELECT pg_advisory_xact_lock_shared(${LOCK + i}::bigint)`).finally(() => db.finish());
}

describe("fairness within a tier", () => {
  it("one FREE tenant's backlog of slow queries: another FREE tenant's request is served after one turn of it, not after the backlog", async () => {
    const token = await t.memberToken("globex", "VIEWER");
    expect((await t.gql(DASHBOARD, { token })).body.data.tenant.slug).toBe("globex");
    const pool = t.clients.appPools.FREE;
    const n = FREE + BACKLOG;
    for (let i = 0; i < n; i++) await owner.query("SELECT pg_advisory_lock($1::bigint)", [LOCK + i]);
    const held = new Set(Array.from({ length: n }, (_, i) => i));
    const unlock = async (i: number) => {
      await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK + i]);
      held.delete(i);
    };
    try {
      // acme holds both FREE connections, then queues BACKLOG more.
      const slow = [slowQuery(0), slowQuery(1)];
      await vi.waitFor(async () => expect(await waitingOnLocks()).toBe(FREE), { timeout: 30_000, interval: 50 });
      for (let i = FREE; i < n; i++) slow.push(slowQuery(i));
      await vi.waitFor(() => expect(pool.waitingCount).toBe(BACKLOG), { timeout: 30_000, interval: 20 });

      // globex's dashboard queues behind the backlog.
      let globexDone = false;
      const globex = t.gql(DASHBOARD, { token }).finally(() => (globexDone = true));
      await vi.waitFor(() => expect(pool.waitingCount).toBe(BACKLOG + 1), { timeout: 30_000, interval: 20 });

      // One connection is given back: acme's turn (its lane was first), its next slow query takes it.
      await unlock(0);
      await vi.waitFor(() => expect(pool.waitingCount).toBe(BACKLOG), { timeout: 30_000, interval: 20 });
      await vi.waitFor(async () => expect(await waitingOnLocks()).toBe(FREE), { timeout: 30_000, interval: 20 });
      expect(globexDone).toBe(false);
      // The next one goes to globex, not to acme's backlog (first come first served gave it acme's third).
      await unlock(1);
      await vi.waitFor(async () => expect(globexDone || (await waitingOnLocks()) === FREE).toBe(true), { timeout: 30_000, interval: 20 });
      expect(globexDone).toBe(true);
      const answered = await globex;
      expect(answered.body.errors).toBeUndefined();
      expect(answered.body.data.tenant.slug).toBe("globex");
      // acme's backlog is intact and is served next: globex's connection went back to it.
      await vi.waitFor(async () => expect(await waitingOnLocks()).toBe(FREE), { timeout: 30_000, interval: 20 });
      expect(pool.waitingCount).toBe(BACKLOG - 2);

      for (const i of [...held]) await unlock(i);
      expect(await Promise.all(slow)).toHaveLength(n);
    } finally {
      for (const i of [...held]) await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK + i]);
    }
  });

  it("two busy tenants of a tier take turns for its connections", async () => {
    // A tier pool of 1 connection on the test database: a, then b, queue two each behind a connection a holds.
    const pool = createPool(t.db.url, APP_ROLE, 1, { windowMs: 1000, clock });
    try {
      const first = await connectFor(pool, "a");
      const order: string[] = [];
      const take = (tenant: string) =>
        connectFor(pool, tenant).then(async (c) => {
          order.push(tenant);
          await c.query("SELECT 1");
          c.release();
        });
      const waiters = [take("a"), take("a"), take("b"), take("b")];
      expect(pool.waitingCount).toBe(4);
      first.release();
      await Promise.all(waiters);
      // First come first served gave a, a, b, b.
      expect(order).toEqual(["a", "b", "a", "b"]);
    } finally {
      await pool.end();
    }
  });

  it("POOL_TENANT_MAX: a tenant at its cap waits while a connection is free, another tenant takes that one at once", async () => {
    const pool = createPool(t.db.url, APP_ROLE, 2, { tenantMax: 1, windowMs: 1000, clock });
    try {
      const a1 = await connectFor(pool, "a");
      let a2Done = false;
      const a2 = connectFor(pool, "a").finally(() => (a2Done = true));
      const b = await connectFor(pool, "b");
      expect((await b.query("SELECT 1 AS one")).rows[0].one).toBe(1);
      expect(a2Done).toBe(false);
      expect(pool.waitingCount).toBe(1);
      a1.release();
      const second = await a2;
      expect((await second.query("SELECT current_user AS u")).rows[0].u).toBe(APP_ROLE);
      second.release();
      b.release();
    } finally {
      await pool.end();
    }
  });
});

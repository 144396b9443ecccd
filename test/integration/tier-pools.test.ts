import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import pg from "pg";
import { requestSlotsOf } from "../../src/db/request-slots.ts";
import { tierClient } from "../../src/db/clients.ts";
import { Prisma } from "../../src/generated/prisma/client.ts";
import type { Plan } from "../../src/generated/prisma/enums.ts";
import { TenantDb } from "../../src/tenancy/tenant-db.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";

/**
 * Tier pools (issue 13 point 4, src/db/clients.ts): each plan's tenants run
 * on their own pool, as many operations at once as it has connections.
 * "Slow queries" here wait on an advisory lock the test holds, so they end
 * when the test says, and nothing is asserted about elapsed time.
 */
const LOCK = 4_242_001;
const POOLS = { FREE: 2, PRO: 3, ENTERPRISE: 12 };

let t: TestApp;
let ids: Record<string, string>;
let owner: pg.Client;

beforeAll(async () => {
  t = await createTestApp({ pools: { ...POOLS, platform: 2, live: 1 } });
  ids = await tenantIdsBySlug(t);
  owner = new pg.Client({ connectionString: t.db.url });
  await owner.connect();
}, 120_000);

afterAll(async () => {
  await owner?.end();
  await t?.close();
});

/** A query operation of `slug` whose statement waits for the test's advisory lock (a slow query). */
function slowQuery(slug: string, plan: Plan) {
  const db = new TenantDb(t.clients.app, { tenantId: ids[slug]!, plan, statementTimeoutMs: 0, mode: "request" });
  return db.queryRaw(Prisma.sql`SELECT pg_advisory_xact_lock_shared(${LOCK}::bigint)`).finally(() => db.finish());
}

/** Backends of the app role waiting for the test's lock. */
async function waitingOnLock(): Promise<number> {
  const { rows } = await owner.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [LOCK],
  );
  return rows[0]!.n;
}

const DASHBOARD = `{ tenant { slug } projects(first: 2) { totalCount } }`;

describe("tier pools", () => {
  it("each plan's client has a pool and as many request slots as its size", () => {
    for (const plan of ["FREE", "PRO", "ENTERPRISE"] as const) {
      const client = tierClient(t.clients.app, plan);
      expect(requestSlotsOf(client)!.pool).toBe(t.clients.appPools[plan]);
      expect(requestSlotsOf(client)!.max).toBe(POOLS[plan]);
    }
    expect(new Set(Object.values(t.clients.appPools)).size).toBe(3);
  });

  it("FREE's slow queries fill FREE's pool: an ENTERPRISE and a PRO request complete while a FREE request still waits", async () => {
    const tokens = {
      globex: await t.memberToken("globex", "VIEWER"),
      wayne: await t.memberToken("wayne", "VIEWER"),
      acme: await t.memberToken("acme", "VIEWER"),
    };
    // Warm the directory and the compiled operation.
    for (const [slug, token] of Object.entries(tokens)) expect((await t.gql(DASHBOARD, { token })).body.data.tenant.slug).toBe(slug);

    await owner.query("SELECT pg_advisory_lock($1::bigint)", [LOCK]);
    let released = false;
    try {
      // globex (FREE) runs as many slow queries as its pool has connections.
      const slow = Array.from({ length: POOLS.FREE }, () => slowQuery("globex", "FREE"));
      await vi.waitFor(async () => expect(await waitingOnLock()).toBe(POOLS.FREE), { timeout: 30_000, interval: 50 });

      let freeDone = false;
      const free = t.gql(DASHBOARD, { token: tokens.globex }).finally(() => (freeDone = true));

      const enterprise = await t.gql(DASHBOARD, { token: tokens.wayne });
      expect(enterprise.body.errors).toBeUndefined();
      expect(enterprise.body.data.tenant.slug).toBe("wayne");
      const pro = await t.gql(DASHBOARD, { token: tokens.acme });
      expect(pro.body.data.tenant.slug).toBe("acme");
      // The FREE request is still waiting for one of FREE's connections.
      expect(freeDone).toBe(false);
      expect(t.clients.appPools.FREE.totalCount).toBe(POOLS.FREE);

      await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK]);
      released = true;
      await Promise.all(slow);
      const answered = await free;
      expect(answered.body.errors).toBeUndefined();
      expect(answered.body.data.tenant.slug).toBe("globex");
    } finally {
      if (!released) await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK]);
    }
  });

  it("a request borrows a request slot only while its Prisma calls are in flight: 12 open transactions, one slot", async () => {
    const pool = t.clients.appPools.ENTERPRISE;
    const slots = requestSlotsOf(tierClient(t.clients.app, "ENTERPRISE"))!;
    const before = slots.made;
    const dbs = Array.from({ length: POOLS.ENTERPRISE }, () => new TenantDb(t.clients.app, { tenantId: ids.wayne!, plan: "ENTERPRISE", statementTimeoutMs: 0, mode: "request" }));
    try {
      // One after another: each opens its transaction, makes a Prisma call (and a batched pair) and keeps the connection.
      for (const db of dbs) {
        expect(await db.client.project.count()).toBeGreaterThan(0);
        const [a, b] = await Promise.all([db.client.project.findFirst(), db.client.deployment.findFirst()]);
        expect([a?.tenantId, b?.tenantId]).toEqual([ids.wayne, ids.wayne]);
      }
      expect(pool.totalCount - pool.idleCount).toBe(POOLS.ENTERPRISE);
      expect(slots.made - before).toBeLessThanOrEqual(1);
    } finally {
      await Promise.all(dbs.map((db) => db.finish()));
    }
  });

  it("a tier serves as many concurrent operations as its pool has connections (12 > the 8 request slots of before)", async () => {
    await owner.query("SELECT pg_advisory_lock($1::bigint)", [LOCK]);
    let released = false;
    try {
      const slow = Array.from({ length: POOLS.ENTERPRISE }, () => slowQuery("wayne", "ENTERPRISE"));
      // All of them reach PostgreSQL at once: none waits in the process for a slot.
      await vi.waitFor(async () => expect(await waitingOnLock()).toBe(POOLS.ENTERPRISE), { timeout: 30_000, interval: 50 });
      await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK]);
      released = true;
      expect(await Promise.all(slow)).toHaveLength(POOLS.ENTERPRISE);
    } finally {
      if (!released) await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK]);
    }
  });
});

import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import pg from "pg";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { placementFor } from "../../src/db/placement-admin.ts";
import { requestSlotsOf } from "../../src/db/request-slots.ts";
import { timeShareOf } from "../../src/db/tier-pool.ts";
import type { TimeShare } from "../../src/db/time-share.ts";
import { TenantDb } from "../../src/tenancy/tenant-db.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

/**
 * Time shares (src/db/time-share.ts, docs/request-path.md "Time shares"):
 * FREE's tier pool may hold 0.5 connection-seconds per second; once it has
 * held more, FREE's next request waits in FREE's queue until the app's
 * clock has paid the debt back, while an ENTERPRISE request goes through at
 * once. The clock is a manual one: a connection is "held for 2 s" by
 * holding it (a statement waiting for the test's advisory lock) while the
 * test moves the clock 2 s. Nothing is asserted about elapsed time.
 */
const LOCK = 4_242_015;
const METRICS_TOKEN = "metrics-token-time-share-0123456789";
const DASHBOARD = `{ tenant { slug } projects(first: 2) { totalCount } }`;

let t: TestApp;
let ids: Record<string, string>;
let owner: pg.Client;
let share: TimeShare;
const clock = new ManualClock();

beforeAll(async () => {
  t = await createTestApp({
    pools: { FREE: 2, PRO: 3, ENTERPRISE: 4, platform: 2, live: 1 },
    timeShares: { plans: { FREE: { share: 0.5, maxWaitMs: 5000 } }, windowMs: 1000, clock },
    clock: clock.now,
    metricsToken: METRICS_TOKEN,
  });
  ids = await tenantIdsBySlug(t);
  share = timeShareOf(t.clients.appPools.FREE)!;
  owner = new pg.Client({ connectionString: t.db.url });
  await owner.connect();
}, 120_000);

afterAll(async () => {
  await owner?.end();
  await t?.close();
});

/** Holds one FREE connection (a statement waiting for the test's lock) while the clock moves `ms`; then lets it finish. */
async function holdFreeConnection(ms: number): Promise<void> {
  await owner.query("SELECT pg_advisory_lock($1::bigint)", [LOCK]);
  const db = new TenantDb(t.clients.app, { tenantId: ids.globex!, plan: "FREE", statementTimeoutMs: 0, mode: "request" });
  const slow = db.queryRaw(Prisma.sql`SELECT pg_advisory_xact_lock_shared(${LOCK}::bigint)`).finally(() => db.finish());
  try {
    await vi.waitFor(
      async () => {
        const { rows } = await owner.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted`, [LOCK]);
        expect(rows[0]!.n).toBe(1);
      },
      { timeout: 30_000, interval: 50 },
    );
    clock.advance(ms);
  } finally {
    await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK]);
  }
  await slow;
}

/** A request whose settling is observed without awaiting it. */
function pending<T>(p: Promise<T>) {
  const state = { done: false };
  void p.finally(() => (state.done = true)).catch(() => {});
  return { p, state };
}

async function metrics(): Promise<string> {
  return (await t.app.fetch("http://localhost/metrics", { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
}

/** A series of FREE's pool on /metrics (0 before its first sample); counters are since start, so tests compare before and after. */
async function freeSeries(name: string): Promise<number> {
  const m = new RegExp(`^${name}\\{pool="app_free"\\} (\\S+)$`, "m").exec(await metrics());
  return m ? Number(m[1]) : 0;
}

describe("tier time shares", () => {
  it("only the plans given a share have one: FREE's pool, not ENTERPRISE's or PRO's", () => {
    expect(share).toBeDefined();
    expect(timeShareOf(t.clients.appPools.ENTERPRISE)).toBeUndefined();
    expect(timeShareOf(t.clients.appPools.PRO)).toBeUndefined();
    // A placement group's FREE pool has a bucket of its own (pools are made on first use, without connecting).
    const schema = placementFor(ids.globex!, "SCHEMA");
    const placed = requestSlotsOf(t.clients.placements.tier(schema, "FREE").prisma)!.pool;
    expect(timeShareOf(placed)).toBeDefined();
    expect(timeShareOf(placed)).not.toBe(share);
    expect(timeShareOf(requestSlotsOf(t.clients.placements.tier(schema, "ENTERPRISE").prisma)!.pool)).toBeUndefined();
  });

  it("a FREE pool over its share queues its next request until the clock pays the debt; an ENTERPRISE request at that moment is answered at once", async () => {
    const tokens = { globex: await t.memberToken("globex", "VIEWER"), wayne: await t.memberToken("wayne", "VIEWER") };
    for (const [slug, token] of Object.entries(tokens)) expect((await t.gql(DASHBOARD, { token })).body.data.tenant.slug).toBe(slug);
    clock.advance(60_000); // a full bucket (500 connection-ms), whatever ran before
    const waitsBefore = await freeSeries("tenantgraph_db_pool_share_waits_total");
    const secondsBefore = await freeSeries("tenantgraph_db_pool_share_wait_seconds_total");

    await holdFreeConnection(2000); // 500 + (0.5 - 1) x 2000 = -500 connection-ms
    expect(share.balanceMs).toBeCloseTo(-500);

    const free = pending(t.gql(DASHBOARD, { token: tokens.globex }));
    await vi.waitFor(() => expect(share.shareWaiting).toBe(1), { timeout: 30_000, interval: 20 });
    const enterprise = await t.gql(DASHBOARD, { token: tokens.wayne });
    expect(enterprise.body.errors).toBeUndefined();
    expect(enterprise.body.data.tenant.slug).toBe("wayne");
    expect(free.state.done).toBe(false);

    // The gauges show it: one queued, for the share, and the balance in debt.
    const text = await metrics();
    expect(text).toMatch(/tenantgraph_db_pool_connections\{pool="app_free",state="share_waiting"\} 1\n/);
    expect(text).toMatch(/tenantgraph_db_pool_connections\{pool="app_free",state="waiting"\} 1\n/);
    expect(text).toMatch(/tenantgraph_db_pool_share_balance_ms\{pool="app_free"\} -500\n/);
    expect(text).not.toMatch(/pool="app_enterprise",state="share_waiting"/);

    clock.advance(999); // -0.5: not yet
    await new Promise((r) => setImmediate(r));
    expect(free.state.done).toBe(false);
    clock.advance(1);
    const answered = await free.p;
    expect(answered.body.errors).toBeUndefined();
    expect(answered.body.data.tenant.slug).toBe("globex");

    expect(await freeSeries("tenantgraph_db_pool_share_waits_total")).toBe(waitsBefore + 1);
    expect(await freeSeries("tenantgraph_db_pool_share_wait_seconds_total")).toBeCloseTo(secondsBefore + 1);
  });

  it("a FREE request waiting for its share still ends at its statement timeout: QUERY_TIMEOUT, and the pool serves once repaid", async () => {
    const token = await t.memberToken("globex", "VIEWER");
    const timeoutsBefore = share.stats.timeouts;
    clock.advance(60_000); // a full bucket
    // One FREE connection held for 2 s: -500; then held on, the debt grows and nothing pays it back.
    await owner.query("SELECT pg_advisory_lock($1::bigint)", [LOCK]);
    const db = new TenantDb(t.clients.app, { tenantId: ids.globex!, plan: "FREE", statementTimeoutMs: 0, mode: "request" });
    const slow = db.queryRaw(Prisma.sql`SELECT pg_advisory_xact_lock_shared(${LOCK}::bigint)`).finally(() => db.finish());
    let unlocked = false;
    try {
      await vi.waitFor(() => expect(t.clients.appPools.FREE.totalCount - t.clients.appPools.FREE.idleCount).toBe(1), { timeout: 30_000, interval: 20 });
      clock.advance(2000);
      const free = pending(t.gql(DASHBOARD, { token }));
      await vi.waitFor(() => expect(share.shareWaiting).toBe(1), { timeout: 30_000, interval: 20 });
      clock.advance(4999);
      await new Promise((r) => setImmediate(r));
      expect(free.state.done).toBe(false);
      clock.advance(1); // its plan's statement timeout (5 s) has passed in the queue
      const answer = await free.p;
      expect(answer.body.errors?.[0]?.extensions?.code).toBe("QUERY_TIMEOUT");
      expect(JSON.stringify(answer.body)).not.toMatch(/SELECT|stack/i);
      expect(share.stats.timeouts).toBe(timeoutsBefore + 1);
      await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK]);
      unlocked = true;
      await slow;
    } finally {
      if (!unlocked) await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK]);
    }
    expect(await freeSeries("tenantgraph_db_pool_share_timeouts_total")).toBe(timeoutsBefore + 1);
    clock.advance(60_000);
    const again = await t.gql(DASHBOARD, { token });
    expect(again.body.data.tenant.slug).toBe("globex");
  });
});

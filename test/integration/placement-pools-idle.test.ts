import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabases, type Databases } from "../../src/db/clients.ts";
import { placementOf, type PlacementRef } from "../../src/db/placement-admin.ts";
import type { TestApp } from "../helpers/app.ts";
import { testDatabaseUrls } from "../helpers/db.ts";
import { placementApp } from "../helpers/placements.ts";

/**
 * Idle eviction of placement pools (docs/placement.md "Pools",
 * PLACEMENT_POOL_IDLE_MS): a placement group unused for the idle period,
 * holding no checked-out connection, is dropped from the process's pools
 * and opened anew on its next use; never while a connection of it is held.
 * The clock is injected: no sleeps. Before, a placement's pools and clients
 * stayed for the process's life; and then, dropped pools were not ended
 * (a holder of an old client kept its connections beside the new pool's).
 */

const PROVISION = `mutation($input: ProvisionTenantInput!) { provisionTenant(input: $input) { tenant { id } } }`;
const IDLE = 60_000;

describe("idle eviction of placement pools", () => {
  const placed = placementApp();
  let t: TestApp;
  let db: Databases;
  let now = Date.UTC(2031, 5, 1);
  const refs: Record<string, { ref: PlacementRef; slug: string }> = {};
  const suffix = Math.random().toString(36).slice(2, 8);

  beforeAll(async () => {
    t = placed.t;
    db = createDatabases({ ...testDatabaseUrls(t.db.url), pools: { FREE: 2, PRO: 2, ENTERPRISE: 2, platform: 2, live: 2 }, placementPools: { idleMs: IDLE, clock: () => now, sweepMs: 0 } });
    for (const placement of ["SCHEMA", "DATABASE"] as const) {
      const slug = `idle-${placement.toLowerCase()}-${suffix}`;
      const made = await t.gql(PROVISION, { token: placed.admin, variables: { input: { name: slug, slug, plan: "PRO", owner: { email: `owner@${slug}.test` }, placement } } });
      expect(made.body.errors).toBeUndefined();
      const ref = placementOf(await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } }));
      placed.made.push(ref);
      refs[placement] = { ref, slug };
    }
  });
  afterAll(async () => {
    await db?.close();
  });

  const groupOf = (ref: PlacementRef) => (ref.placement === "SCHEMA" ? "schema" : `database:${ref.server}/${ref.name}`);
  const groupPools = (ref: PlacementRef) => [...db.placements.all.keys()].filter((k) => k.startsWith(ref.placement === "SCHEMA" ? "schema:" : `database:${ref.server}/${ref.name}:`));
  const ping = async (ref: PlacementRef) => (await db.placements.tier(ref, "PRO").prisma.$queryRawUnsafe<{ n: number }[]>(`SELECT 1 AS n`))[0]!.n;

  it.each(["SCHEMA", "DATABASE"] as const)("a %s placement's pools unused for the idle period are dropped, never while a connection is held, and reopen on next use", async (placement) => {
    const { ref } = refs[placement]!;
    expect(await ping(ref)).toBe(1);
    const first = db.placements.tier(ref, "PRO");
    expect(groupPools(ref)).toEqual([expect.stringMatching(/:PRO$/)]);
    // Just under the idle period: kept.
    now += IDLE - 1;
    expect(db.placements.evictIdle()).not.toContain(groupOf(ref));
    // A connection held (a request's transaction) across the idle period: kept.
    const pool = db.placements.all.get(groupPools(ref)[0]!)!;
    const held = await pool.connect();
    now += 10 * IDLE;
    expect(db.placements.evictIdle()).not.toContain(groupOf(ref));
    expect(groupPools(ref)).toHaveLength(1);
    held.release();
    // Given back, then idle for the period: dropped.
    now += IDLE;
    expect(db.placements.evictIdle()).toContain(groupOf(ref));
    expect(groupPools(ref)).toEqual([]);
    // The next use opens it anew (a new client on a new pool).
    expect(await ping(ref)).toBe(1);
    const second = db.placements.tier(ref, "PRO");
    expect(second).not.toBe(first);
    expect(groupPools(ref)).toHaveLength(1);
    expect(db.placements.all.get(groupPools(ref)[0]!)).not.toBe(pool);
    // The dropped pool is ended: its connections closed, it opens none.
    expect((pool as unknown as { ending: boolean }).ending).toBe(true);
    // A holder of the old client (a subscription's TenantDb) still works, on the group's new pool.
    const fresh = db.placements.all.get(groupPools(ref)[0]!)!;
    const freshChecked = fresh.totalCount;
    expect((await first.prisma.$queryRawUnsafe<{ n: number }[]>(`SELECT 1 AS n`))[0]!.n).toBe(1);
    expect(pool.totalCount).toBe(0);
    expect(fresh.totalCount).toBeGreaterThanOrEqual(Math.max(1, freshChecked));
  });

  it("a placed tenant's requests are served after its placement's pools were dropped", async () => {
    const { slug } = refs.DATABASE!;
    const owner = await t.token(`owner@${slug}.test`, slug);
    const q = `{ tenant { slug } projects(first: 1) { totalCount } }`;
    expect((await t.gql(q, { token: owner })).body.errors).toBeUndefined();
    // The app's own pools (wall clock): everything idle, seen from far ahead.
    const dropped = t.clients.placements.evictIdle(Date.now() + 365 * 86_400_000);
    expect(dropped).toContain(`database:${refs.DATABASE!.ref.server}/${refs.DATABASE!.ref.name}`);
    const again = await t.gql(q, { token: owner });
    expect(again.body.errors).toBeUndefined();
    expect(again.body.data.tenant.slug).toBe(slug);
  });
});

import { beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { placementOf, type PlacementRef } from "../../src/db/placement-admin.ts";
import { moveLockSql } from "../../src/db/placement-fence.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";
import type { TestApp } from "../helpers/app.ts";
import { placementApp, sql } from "../helpers/placements.ts";

/**
 * purgeTenant of a placed tenant (docs/placement.md, "Purge"): the
 * placement is dropped inside the purge's transaction, before it commits.
 * A placement server that is down fails the purge with nothing changed (the
 * tenant still PENDING_DELETION, refused), and the purge called again once
 * the server is back completes. Before: the main database's rows were
 * committed away first, the drop then failed, the tenant's database stayed
 * on its server and a second purge answered NOT_FOUND.
 */

const PROVISION = `mutation($input: ProvisionTenantInput!) { provisionTenant(input: $input) { tenant { id } } }`;
const SCHEDULE = `mutation($id: ID!) { scheduleTenantDeletion(input: { tenantId: $id }) { tenant { status } } }`;
const PURGE = `mutation($id: ID!) { purgeTenant(input: { tenantId: $id }) { purgedTenantId } }`;
/** A port nothing listens on: a placement server that is down. */
const DOWN = "postgresql://postgres@127.0.0.1:1/postgres";

describe("purge of a placed tenant", () => {
  const placed = placementApp();
  let t: TestApp;
  beforeAll(() => ({ t } = placed));
  const suffix = Math.random().toString(36).slice(2, 8);

  /** A PENDING_DELETION tenant of `placement` (on server `target`) with one project of its owner's. */
  async function doomed(tag: string, placement: "SCHEMA" | "DATABASE", target?: string) {
    const slug = `purge-${tag}-${suffix}`;
    const made = await t.gql(PROVISION, {
      token: placed.admin,
      variables: { input: { name: slug, slug, plan: "PRO", owner: { email: `owner@${slug}.test` }, placement, placementTarget: target } },
    });
    expect(made.body.errors).toBeUndefined();
    const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } });
    const ref = placementOf(row);
    placed.made.push(ref);
    const owner = await t.token(`owner@${slug}.test`, slug);
    expect((await t.gql(`mutation { createProject(input: { name: "Doomed" }) { project { id } } }`, { token: owner })).body.errors).toBeUndefined();
    const gid = toGlobalId("Tenant", row.id);
    expect((await t.gql(SCHEDULE, { token: placed.admin, variables: { id: gid } })).body.data.scheduleTenantDeletion.tenant.status).toBe("PENDING_DELETION");
    return { id: row.id, gid, ref, owner };
  }

  const databaseExists = async (ref: PlacementRef) => (await sql(t.db.url, `SELECT 1 FROM pg_database WHERE datname = $1`, [ref.name])).length === 1;
  const projectsIn = async (ref: PlacementRef) => (await sql<{ n: number }>(t.clients.placements.admin.databaseUrl(ref), `SELECT count(*)::int AS n FROM projects`))[0]!.n;

  it("a placement server that is down fails the purge with nothing changed; purged again once it is back, nothing is left", async () => {
    // A second server ("far", the same PostgreSQL under another name) whose URL is then pointed at a closed port.
    const servers = t.clients.placements.admin.servers as Record<string, string>;
    servers.far = t.db.url;
    try {
      const k = await doomed("down", "DATABASE", "far");
      expect(k.ref.server).toBe("far");
      servers.far = DOWN;
      const failed = await t.gql(PURGE, { token: placed.admin, variables: { id: k.gid } });
      expect(failed.body.errors?.length).toBeGreaterThan(0);
      expect(failed.body.data?.purgeTenant ?? null).toBeNull();
      expect(JSON.stringify(failed.body.errors)).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|at .*\.ts/);
      // Nothing changed: the directory row, its rows and the placement are all there, the tenant refused.
      const row = await t.clients.platform.tenant.findUnique({ where: { id: k.id } });
      expect(row?.status).toBe("PENDING_DELETION");
      expect(await t.clients.platform.membership.count({ where: { tenantId: k.id } })).toBe(1);
      expect(await databaseExists(k.ref)).toBe(true);
      const refused = await t.gql(`{ projects(first: 5) { totalCount } }`, { token: k.owner });
      expect(refused.body.data?.projects ?? null).toBeNull();
      // The server is back: the same purge completes.
      servers.far = t.db.url;
      expect(await projectsIn(k.ref)).toBe(1);
      const purged = await t.gql(PURGE, { token: placed.admin, variables: { id: k.gid } });
      expect(purged.body.errors).toBeUndefined();
      expect(purged.body.data.purgeTenant.purgedTenantId).toBe(k.gid);
      expect(await t.clients.platform.tenant.findUnique({ where: { id: k.id } })).toBeNull();
      expect(await databaseExists(k.ref)).toBe(false);
    } finally {
      servers.far = t.db.url;
    }
  }, 60_000);

  it.each(["SCHEMA", "DATABASE"] as const)("a %s tenant whose placement is already gone (a purge whose COMMIT failed after its drop) is purged by a second call", async (placement) => {
    const k = await doomed(`gone-${placement.toLowerCase()}`, placement);
    await t.clients.placements.forget(k.ref);
    await t.clients.placements.admin.drop(k.ref);
    const purged = await t.gql(PURGE, { token: placed.admin, variables: { id: k.gid } });
    expect(purged.body.errors).toBeUndefined();
    expect(await t.clients.platform.tenant.findUnique({ where: { id: k.id } })).toBeNull();
    expect(await t.clients.placements.admin.exists(k.ref)).toBe(false);
  }, 60_000);

  it("a SCHEMA tenant's purge drops its schema with its rows", async () => {
    const k = await doomed("schema", "SCHEMA");
    expect(await t.clients.placements.admin.exists(k.ref)).toBe(true);
    const purged = await t.gql(PURGE, { token: placed.admin, variables: { id: k.gid } });
    expect(purged.body.errors).toBeUndefined();
    expect(await t.clients.placements.admin.exists(k.ref)).toBe(false);
  }, 60_000);

  it("a move under way outside its write fence (its move lock held) refuses the purge with TENANT_MOVING, nothing changed; purged once the move is over", async () => {
    const k = await doomed("moving", "SCHEMA");
    // What a move holds from its start to its end (src/db/placement-move.ts),
    // also while it settles earlier moves, makes the target or drops the old
    // copy, when the write fence is not taken.
    const mover = new pg.Client({ connectionString: t.db.url });
    await mover.connect();
    try {
      const [lock] = (await mover.query<{ held: boolean }>(`SELECT pg_try_advisory_lock(${moveLockSql("$1::text")}) AS held`, [k.id])).rows;
      expect(lock!.held).toBe(true);
      const refused = await t.gql(PURGE, { token: placed.admin, variables: { id: k.gid } });
      expect(refused.body.errors?.[0]?.extensions?.code).toBe("TENANT_MOVING");
      expect((await t.clients.platform.tenant.findUnique({ where: { id: k.id } }))?.status).toBe("PENDING_DELETION");
      expect(await t.clients.placements.admin.exists(k.ref)).toBe(true);
    } finally {
      await mover.end();
    }
    const purged = await t.gql(PURGE, { token: placed.admin, variables: { id: k.gid } });
    expect(purged.body.errors).toBeUndefined();
    expect(await t.clients.placements.admin.exists(k.ref)).toBe(false);
  }, 60_000);
});

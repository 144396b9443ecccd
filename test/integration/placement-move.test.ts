import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { placementKey, placementOf, type PlacementRef } from "../../src/db/placement-admin.ts";
import { TENANT_TABLES, tenantRowsWhere } from "../../src/db/placement-rows.ts";
import { tenantKey } from "../../src/infra/store.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * moveTenant (issue 15 point 3): a tenant moves live between placements
 * under concurrent reads and writes; every row is the same after the move;
 * each write either succeeded exactly once or was refused with TENANT_MOVING
 * (+ Retry-After); a failed verification leaves the tenant where it was.
 */

const MOVE = `mutation($input: MoveTenantInput!) { moveTenant(input: $input) { tenant { id placement } movedRows durationMs } }`;
const CREATE = `mutation($name: String!) { createProject(input: { name: $name }) { project { id name } } }`;
const READ = `{ projects(first: 100, orderBy: { field: NAME, direction: ASC }) { edges { node { id name } } } }`;

describe("moveTenant", () => {
  let t: TestApp;
  let admin: string;
  let tenantId: string;
  /** Its global id (the API's). */
  let gid: string;
  let owner: string;

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    admin = await t.adminToken();
    const res = await t.gql(`mutation($input: ProvisionTenantInput!) { provisionTenant(input: $input) { tenant { id } } }`, {
      token: admin,
      variables: { input: { name: "Mover", slug: "live-mover", plan: "ENTERPRISE", owner: { email: "owner@live-mover.test" } } },
    });
    expect(res.body.errors).toBeUndefined();
    gid = res.body.data.provisionTenant.tenant.id;
    tenantId = (await t.clients.platform.tenant.findFirstOrThrow({ where: { slug: "live-mover" } })).id;
    owner = await t.token("owner@live-mover.test", "live-mover");
    for (let i = 0; i < 20; i++) expect((await t.gql(CREATE, { token: owner, variables: { name: `seed-${String(i).padStart(2, "0")}` } })).body.errors).toBeUndefined();
  });
  afterAll(async () => {
    const row = await t?.clients.platform.tenant.findFirst({ where: { slug: "live-mover" } });
    if (row && row.placement !== "POOLED") await t.clients.placements.admin.drop(placementOf(row)).catch(() => {});
    await t?.close();
    await t?.store.close();
  });

  /** A statement as the main database's owner (the migrator). */
  async function asOwner(text: string) {
    const c = new pg.Client({ connectionString: t.db.url });
    await c.connect();
    try {
      await c.query(text);
    } finally {
      await c.end();
    }
  }

  /** Three moves from wherever the tenant is (tests run in any order): to the two other placements, then back. */
  const tour = async () => {
    const all = ["POOLED", "SCHEMA", "DATABASE"];
    const i = all.indexOf((await placementNow()).placement);
    return [all[(i + 1) % 3]!, all[(i + 2) % 3]!, all[i]!];
  };
  const moveAudits = () => t.clients.platform.auditLogEntry.findMany({ where: { tenantId, action: "tenant.move", crossTenant: true }, orderBy: { createdAt: "asc" } });

  const placementNow = async (): Promise<PlacementRef> => placementOf(await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: tenantId } }));

  /** Every row of the tenant in its placement, table by table (placement columns and the platform's own audit entries aside). */
  async function dump(ref: PlacementRef) {
    const c = new pg.Client({ connectionString: t.clients.placements.admin.databaseUrl(ref) });
    await c.connect();
    try {
      if (ref.placement === "SCHEMA") await c.query(`SET search_path TO "${ref.name}"`);
      await c.query(`SELECT set_config('app.tenant_id', $1, false)`, [tenantId]);
      const out: Record<string, unknown[]> = {};
      for (const table of TENANT_TABLES) {
        if (table === "usage_counters" || table === "users") continue;
        const where = tenantRowsWhere(table) + (table === "audit_log" ? " AND NOT cross_tenant" : "");
        const json = table === "tenants" ? `to_jsonb(x) - 'placement' - 'placement_server' - 'placement_name' - 'updated_at'` : "to_jsonb(x)";
        out[table] = (await c.query(`SELECT ${json} AS r FROM "${table}" x WHERE ${where} ORDER BY 1`, [tenantId])).rows.map((r) => r.r);
      }
      return out;
    } finally {
      await c.end();
    }
  }

  const names = async () => {
    const res = await t.gql(READ, { token: owner });
    expect(res.body.errors).toBeUndefined();
    return (res.body.data.projects.edges as { node: { name: string } }[]).map((e) => e.node.name);
  };

  /** Moves the tenant while readers and writers run; answers the writes that succeeded and how many were refused. */
  async function moveUnderLoad(placement: string) {
    let moving = true;
    const written: string[] = [];
    let refused = 0;
    let reads = 0;
    const unexpected: unknown[] = [];
    const writer = async (w: number) => {
      for (let i = 0; moving; i++) {
        const name = `${placement}-w${w}-${i}`;
        const res = await t.gql(CREATE, { token: owner, variables: { name } });
        const code = res.body.errors?.[0]?.extensions?.code;
        if (!res.body.errors) written.push(name);
        else if (code === "TENANT_MOVING") {
          refused++;
          expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
        } else unexpected.push(res.body.errors);
      }
    };
    const reader = async () => {
      while (moving) {
        const res = await t.gql(READ, { token: owner });
        if (!res.body.errors) reads++;
        else if (res.body.errors[0]?.extensions?.code !== "TENANT_MOVING") unexpected.push(res.body.errors);
      }
    };
    const load = [writer(0), writer(1), reader(), reader()];
    // Let the load start before the move.
    while (written.length < 3) await new Promise((r) => setImmediate(r));
    const res = await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement } } });
    const afterMove = written.length;
    // And run on the new placement a little.
    while (written.length < afterMove + 3 && unexpected.length === 0) await new Promise((r) => setImmediate(r));
    moving = false;
    await Promise.all(load);
    expect(unexpected).toEqual([]);
    return { res, written, refused, reads };
  }

  it("moves POOLED -> SCHEMA -> DATABASE -> POOLED under concurrent reads and writes; every row kept, each write once or refused with TENANT_MOVING", async () => {
    const places = await tour();
    const audited = (await moveAudits()).length;
    let rows = await dump(await placementNow());
    const projectNames = (d: Record<string, unknown[]>) => d.projects!.map((p) => (p as { name: string }).name).sort();
    let expected = projectNames(rows);
    expect(expected).toEqual(await names());
    for (const placement of places) {
      const before = await placementNow();
      const { res, written, refused, reads } = await moveUnderLoad(placement);
      expect(res.body.errors).toBeUndefined();
      expect(res.body.data.moveTenant.tenant.placement).toBe(placement);
      expect(res.body.data.moveTenant.movedRows).toBeGreaterThan(20);
      const after = await placementNow();
      expect(after.placement).toBe(placement);
      expect(placementKey(after)).not.toBe(placementKey(before));
      const entry = await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { tenantId, action: "tenant.move", crossTenant: true }, orderBy: { createdAt: "desc" } });
      const { writesRefusedMs } = entry.metadata as { writesRefusedMs: number };
      console.info(
        `move ${placementKey(before)} -> ${placementKey(after)}: ${res.body.data.moveTenant.movedRows} rows, ${res.body.data.moveTenant.durationMs} ms, writes refused for ${writesRefusedMs} ms; writes ok ${written.length}, refused ${refused}; reads ${reads}`,
      );
      // Every write that succeeded is there exactly once; none other.
      expected = [...expected, ...written].sort();
      const now = await dump(after);
      expect(projectNames(now)).toEqual(expected);
      // Every row of every table: the rows before plus the writes' own.
      const fresh = (table: string) => now[table]!.filter((r) => !rows[table]!.some((o) => JSON.stringify(o) === JSON.stringify(r)));
      for (const table of Object.keys(rows)) {
        if (table === "tenants" || table === "tenant_cache_generations") continue;
        // Nothing lost or changed: each old row is still there as it was.
        for (const old of rows[table]!) expect(now[table]).toContainEqual(old);
      }
      expect(fresh("projects").map((p) => (p as { name: string }).name).sort()).toEqual([...written].sort());
      // And the API answers from the new placement.
      expect((await t.gql(`{ tenant { placement } }`, { token: owner })).body.data?.tenant?.placement).toBe(placement);
      expect(now.tenants).toEqual(rows.tenants);
      rows = now;
      // The old copy is gone: no data rows of the tenant in the shared tables when placed, no placement left behind.
      if (before.placement !== "POOLED") expect(await t.clients.placements.admin.exists(before)).toBe(false);
      if (after.placement !== "POOLED") expect(await t.clients.platform.project.count({ where: { tenantId } })).toBe(0);
    }
    // The audit entries: one per move, naming both placements.
    const audit = (await moveAudits()).slice(audited);
    expect(audit.map((a) => (a.metadata as { to: string }).to.split(":")[0])).toEqual(places.map((p) => p.toLowerCase()));
  }, 180_000);

  it("a replica whose directory eviction was lost is refused by PostgreSQL's route check (TENANT_MOVING, entry evicted), never served from the old copy", async () => {
    const key = tenantKey(tenantId, "info");
    for (const placement of await tour()) {
      // The directory entry as a replica caches it before the move.
      expect((await t.gql(READ, { token: owner })).body.errors).toBeUndefined();
      const stale = await t.store.get(key);
      expect(stale).not.toBeNull();
      const moved = await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement } } });
      expect(moved.body.errors).toBeUndefined();
      // The eviction is lost: the old route is back in the cache.
      await t.store.set(key, stale!, 300);
      const write = await t.gql(CREATE, { token: owner, variables: { name: `stale-${placement}` } });
      expect(write.body.errors?.[0]?.extensions?.code).toBe("TENANT_MOVING");
      expect(write.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(await t.store.get(key)).toBeNull();
      // The retry is routed to the new placement and succeeds, once.
      expect((await t.gql(CREATE, { token: owner, variables: { name: `stale-${placement}` } })).body.errors).toBeUndefined();
      const rows = await dump(await placementNow());
      expect(rows.projects!.filter((p) => (p as { name: string }).name === `stale-${placement}`)).toHaveLength(1);
    }
  }, 120_000);

  it("while a move holds the fence, the tenant's mutations and platform changes get TENANT_MOVING + Retry-After, its reads go on", async () => {
    for (const placement of ["POOLED", "DATABASE"]) {
      if ((await placementNow()).placement !== placement) {
        expect((await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement } } })).body.errors).toBeUndefined();
      }
      const ref = await placementNow();
      // The fence as a move holds it: in the source database and, for a DATABASE source, in the main one too.
      const holders = await Promise.all(
        [ref, ...(ref.placement === "DATABASE" ? [{ placement: "POOLED", server: null, name: null } as PlacementRef] : [])].map(async (r) => {
          const c = new pg.Client({ connectionString: t.clients.placements.admin.databaseUrl(r) });
          await c.connect();
          await c.query(`SELECT pg_advisory_lock(hashtext('tenant-move:' || $1::text))`, [tenantId]);
          return c;
        }),
      );
      try {
        const before = await names();
        const write = await t.gql(CREATE, { token: owner, variables: { name: `fenced-${placement}` } });
        expect(write.status).toBe(503);
        expect(write.body.errors?.[0]?.extensions?.code).toBe("TENANT_MOVING");
        expect(write.headers.get("retry-after")).toBe("1");
        const suspend = await t.gql(`mutation($input: SuspendTenantInput!) { suspendTenant(input: $input) { tenant { id } } }`, {
          token: admin,
          variables: { input: { tenantId: gid, reason: "during a move" } },
        });
        expect(suspend.body.errors?.[0]?.extensions?.code).toBe("TENANT_MOVING");
        expect(await names()).toEqual(before);
      } finally {
        for (const c of holders) await c.end();
      }
      // Nothing of the refused writes was made; once the fence is gone they go through.
      expect((await dump(await placementNow())).projects!.some((p) => (p as { name: string }).name === `fenced-${placement}`)).toBe(false);
      expect((await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: tenantId } })).status).toBe("ACTIVE");
      expect((await t.gql(CREATE, { token: owner, variables: { name: `fenced-${placement}` } })).body.errors).toBeUndefined();
    }
  }, 120_000);

  it("a verification failure rolls the move back: the tenant stays where it was, with every row", async () => {
    if ((await placementNow()).placement !== "SCHEMA") {
      expect((await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "SCHEMA" } } })).body.errors).toBeUndefined();
    }
    const audited = (await moveAudits()).length;
    const placed = await placementNow();
    const before = await dump(placed);
    const shown = await names();
    // A real fault in the target: a trigger of the main database that alters every copied project (it fires even for the copy's replica role).
    await asOwner(`CREATE FUNCTION test_corrupt_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.name := NEW.name || '!'; RETURN NEW; END $$`);
    await asOwner(`CREATE TRIGGER test_corrupt_copy BEFORE INSERT ON projects FOR EACH ROW EXECUTE FUNCTION test_corrupt_copy()`);
    await asOwner(`ALTER TABLE projects ENABLE ALWAYS TRIGGER test_corrupt_copy`);
    try {
      const res = await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "POOLED" } } });
      expect(res.body.errors?.length).toBe(1);
    } finally {
      await asOwner(`DROP TRIGGER test_corrupt_copy ON projects`);
      await asOwner(`DROP FUNCTION test_corrupt_copy()`);
    }
    expect(placementKey(await placementNow())).toBe(placementKey(placed));
    // Every row as it was (the response-cache generation aside: the attempt's audit entry, a platform change of the tenant, bumps it).
    const rows = (d: Record<string, unknown[]>) => ({ ...d, tenant_cache_generations: undefined });
    expect(rows(await dump(placed))).toEqual(rows(before));
    expect(await t.clients.platform.project.count({ where: { tenantId } })).toBe(0);
    expect(await names()).toEqual(shown);
    // Writes go on where it is.
    expect((await t.gql(CREATE, { token: owner, variables: { name: "after-rollback" } })).body.errors).toBeUndefined();
    // Audited are the moves that happened, not the one rolled back (whose attempt is).
    expect((await moveAudits()).length).toBe(audited);
    expect((await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { tenantId, action: "tenant.move.start" }, orderBy: { createdAt: "desc" } })).metadata).toMatchObject({ to: "pooled" });
  }, 60_000);
});

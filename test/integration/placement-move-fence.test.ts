import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { placementFor, placementOf, POOLED, type PlacementAdmin, type PlacementRef } from "../../src/db/placement-admin.ts";
import { moveFenceSql } from "../../src/db/placement-fence.ts";
import { moveTenantRows, settleMoves } from "../../src/db/placement-move.ts";
import { routeOf } from "../../src/db/placement-route.ts";
import { syncToDirectory } from "../../src/db/placement-sync.ts";
import { ApiKeyUse } from "../../src/tenancy/last-used.ts";
import type { TestApp } from "../helpers/app.ts";
import { placementApp } from "../helpers/placements.ts";
import { tenantKey } from "../../src/infra/store.ts";

/**
 * A move and the directory syncs of a placed tenant (docs/placement.md,
 * "Moving a tenant"): regressions found by the review of moveTenant
 * (a stale sync copying an old placement's rows over the main database's).
 */
const PROVISION = `mutation($input: ProvisionTenantInput!) { provisionTenant(input: $input) { tenant { id } } }`;
const KEY = `mutation($name: String!) { createApiKey(input: { name: $name, role: VIEWER }) { apiKey { id name } } }`;
/** A statement naming a placement in a tenants row: the target's, the directory's switch, an old copy's mark ("tenant_…".tenants in the main database). */
const NAMING = /^UPDATE ("[a-z0-9_]+"\.)?tenants SET placement = \$2/;
/** The recount of the analytics counters, which ends the copy into a SCHEMA or DATABASE target (after every table, before the verification). */
const RECOUNT = "SELECT app_tenant_stats_recount(";

describe("placement move and directory sync", () => {
  const app = placementApp();
  const made = app.made;
  let t: TestApp;
  let admin: string;
  beforeAll(() => ({ t, admin } = app));

  /** A SCHEMA tenant with an API key made through the API (so synced to the main database). */
  async function placedWithKey(slug: string) {
    const res = await t.gql(PROVISION, { token: admin, variables: { input: { name: slug, slug, plan: "PRO", owner: { email: `owner@${slug}.test` }, placement: "SCHEMA" } } });
    expect(res.body.errors).toBeUndefined();
    const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } });
    const ref = placementOf(row);
    made.push(ref);
    const owner = await t.token(`owner@${slug}.test`, slug);
    const key = await t.gql(KEY, { token: owner, variables: { name: "k1" } });
    expect(key.body.errors).toBeUndefined();
    const keyId = (await t.clients.platform.apiKey.findFirstOrThrow({ where: { tenantId: row.id, name: "k1" } })).id;
    return { tenantId: row.id, ref, owner, keyId };
  }

  /** A statement on the main database as its owner. */
  async function onMain<R = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<R[]> {
    const c = new pg.Client({ connectionString: t.db.url });
    await c.connect();
    try {
      return (await c.query(text, params)).rows as R[];
    } finally {
      await c.end();
    }
  }
  const keyNameInMain = async (keyId: string) => (await t.clients.platform.apiKey.findFirstOrThrow({ where: { id: keyId } })).name;

  it("a directory sync of a placement the directory no longer names copies nothing over the main database", async () => {
    const { tenantId, ref, keyId } = await placedWithKey("sync-after-switch");
    // As after a move to POOLED: the directory names the main database, whose rows are the live ones (one changed since).
    await onMain(`UPDATE tenants SET placement = 'POOLED', placement_server = NULL, placement_name = NULL WHERE id = $1`, [tenantId]);
    await onMain(`UPDATE api_keys SET name = 'changed-after-switch' WHERE id = $1`, [keyId]);
    try {
      // A sync of the old copy that started before the switch runs now.
      const changes = await syncToDirectory(t.clients.placements.admin, ref, tenantId);
      expect(changes).toEqual({ userIds: [], keyHashes: [], subjects: [] });
      expect(await keyNameInMain(keyId)).toBe("changed-after-switch");
    } finally {
      await onMain(`UPDATE tenants SET placement = 'SCHEMA', placement_name = $2 WHERE id = $1`, [tenantId, ref.name]);
    }
  });

  it("a mutation refused with TENANT_MOVING, or that wrote nothing, runs no directory sync", async () => {
    const { tenantId, owner, keyId } = await placedWithKey("sync-when-refused");
    // The main database's copy differs from the placement's: any sync would restore "k1".
    await onMain(`UPDATE api_keys SET name = 'main-only' WHERE id = $1`, [keyId]);
    // The move fence held (a SCHEMA tenant's source database is the main one).
    const fence = new pg.Client({ connectionString: t.db.url });
    await fence.connect();
    try {
      await fence.query(`SELECT pg_advisory_lock(${moveFenceSql("$1::text")})`, [tenantId]);
      const refused = await t.gql(KEY, { token: owner, variables: { name: "k2" } });
      expect(refused.body.errors?.[0]?.extensions?.code).toBe("TENANT_MOVING");
    } finally {
      await fence.end();
    }
    expect(await keyNameInMain(keyId)).toBe("main-only");
    // A mutation that fails before writing anything.
    const invalid = await t.gql(`mutation { createProject(input: { name: "" }) { project { id } } }`, { token: owner });
    expect(invalid.body.errors?.[0]?.extensions?.code).toBeTruthy();
    expect(await keyNameInMain(keyId)).toBe("main-only");
    // A mutation that wrote does sync (the placement's rows decide).
    const wrote = await t.gql(KEY, { token: owner, variables: { name: "k3" } });
    expect(wrote.body.errors).toBeUndefined();
    expect(await keyNameInMain(keyId)).toBe("k1");
  });

  const lastUsedInMain = async (keyId: string) => (await t.clients.platform.apiKey.findFirstOrThrow({ where: { id: keyId } })).lastUsedAt;

  it("an API key's last use is not written while a move holds the fence; the key's next use writes it", async () => {
    const { tenantId, keyId } = await placedWithKey("last-used-fenced");
    const key = { id: keyId, tenantId };
    const t0 = Date.now();
    const uses = new ApiKeyUse(t.clients.platform);
    // The fence as a move holds it in the main database (where last uses are written, whatever the source).
    const fence = new pg.Client({ connectionString: t.db.url });
    await fence.connect();
    try {
      await fence.query(`SELECT pg_advisory_lock(${moveFenceSql("$1::text")})`, [tenantId]);
      await uses.note(key, t0);
      expect(await lastUsedInMain(keyId)).toBeNull();
    } finally {
      await fence.end();
    }
    // Within the minute, yet written: the one before was not.
    const next = uses.note(key, t0 + 1_000);
    expect(next).toBeDefined();
    await next;
    expect(await lastUsedInMain(keyId)).toEqual(new Date(t0 + 1_000));
  });

  it("a move into the main database keeps an API key's last use recorded there (the placement's copy never has it)", async () => {
    const { tenantId, ref, keyId } = await placedWithKey("last-used-moved");
    const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
    await onMain(`UPDATE api_keys SET last_used_at = $2 WHERE id = $1`, [keyId, at]);
    await moveTenantRows(t.clients.placements.admin, tenantId, ref, POOLED);
    expect(await lastUsedInMain(keyId)).toEqual(at);
  });

  /** A POOLED tenant with three projects. */
  async function pooledWithProjects(slug: string) {
    const res = await t.gql(PROVISION, { token: admin, variables: { input: { name: slug, slug, plan: "PRO", owner: { email: `owner@${slug}.test` } } } });
    expect(res.body.errors).toBeUndefined();
    const tenantId = (await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } })).id;
    const owner = await t.token(`owner@${slug}.test`, slug);
    for (let i = 0; i < 3; i++) expect((await t.gql(`mutation { createProject(input: { name: "p${i}" }) { project { id } } }`, { token: owner })).body.errors).toBeUndefined();
    const to = placementFor(tenantId, "SCHEMA");
    made.push(to);
    return { tenantId, to };
  }
  const projectsIn = async (ref: PlacementRef) => Number((await onMain<{ n: number }>(`SELECT count(*)::int AS n FROM "${ref.name}".projects`))[0]?.n);

  it("a second move of the tenant while one runs is refused and drops nothing", async () => {
    const { tenantId, to } = await pooledWithProjects("two-movers");
    const real = t.clients.placements.admin;
    let reached!: () => void;
    const atCreate = new Promise<void>((r) => (reached = r));
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    // The first mover holds on before its CREATE (as a slow one would).
    const first: PlacementAdmin = Object.create(real);
    first.create = async (ref) => {
      reached();
      await opened;
      return real.create(ref);
    };
    const one = moveTenantRows(first, tenantId, POOLED, to);
    await atCreate;
    await expect(moveTenantRows(real, tenantId, POOLED, to)).rejects.toThrow(/another move of the tenant .* is under way/);
    open();
    await one;
    const row = await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: tenantId } });
    expect(placementOf(row)).toEqual(to);
    expect(await real.exists(to)).toBe(true);
    expect(await projectsIn(to)).toBe(3);
  });

  it("a move whose CREATE finds the target made by someone else does not drop it", async () => {
    const { tenantId, to } = await pooledWithProjects("create-raced");
    const real = t.clients.placements.admin;
    // Another creator made the target between this move's check and its CREATE.
    await real.create(to);
    const late: PlacementAdmin = Object.create(real);
    late.exists = async () => false;
    await expect(moveTenantRows(late, tenantId, POOLED, to)).rejects.toThrow(/already exists/);
    expect(await real.exists(to)).toBe(true);
    expect((await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: tenantId } })).placement).toBe("POOLED");
  });

  const MOVE = `mutation($input: MoveTenantInput!) { moveTenant(input: $input) { tenant { id placement } movedRows } }`;

  /** A SCHEMA tenant with one project, its global id, owner token and both refs it may be in. */
  async function schemaTenant(slug: string) {
    const res = await t.gql(PROVISION, { token: admin, variables: { input: { name: slug, slug, plan: "ENTERPRISE", owner: { email: `owner@${slug}.test` }, placement: "SCHEMA" } } });
    expect(res.body.errors).toBeUndefined();
    const tenantId = (await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } })).id;
    const owner = await t.token(`owner@${slug}.test`, slug);
    expect((await t.gql(`mutation { createProject(input: { name: "seed" }) { project { id } } }`, { token: owner })).body.errors).toBeUndefined();
    made.push(placementFor(tenantId, "SCHEMA"), placementFor(tenantId, "DATABASE"));
    return { tenantId, gid: res.body.data.provisionTenant.tenant.id as string, owner };
  }

  /** Runs `fn` with the statements matching `fails` (counted from 1 over every pg client) rejected as a deadlock. */
  async function withFailing<T>(fails: (text: string, n: number) => boolean, match: (text: string) => boolean, fn: () => Promise<T>): Promise<T> {
    const orig = pg.Client.prototype.query;
    let n = 0;
    (pg.Client.prototype as { query: unknown }).query = function (this: pg.Client, text: unknown, ...rest: unknown[]) {
      if (typeof text === "string" && match(text) && fails(text, ++n)) return Promise.reject(Object.assign(new Error("injected: deadlock detected"), { code: "40P01" }));
      return (orig as (...a: unknown[]) => unknown).call(this, text, ...rest);
    };
    try {
      return await fn();
    } finally {
      (pg.Client.prototype as { query: unknown }).query = orig;
    }
  }

  /** Where a project of that name is: in each copy of the tenant that exists. */
  async function whereIs(tenantId: string, name: string) {
    const found: string[] = [];
    for (const ref of [placementFor(tenantId, "SCHEMA"), placementFor(tenantId, "DATABASE")]) {
      if (!(await t.clients.placements.admin.exists(ref))) continue;
      const c = new pg.Client({ connectionString: t.clients.placements.admin.databaseUrl(ref) });
      await c.connect();
      try {
        const table = ref.placement === "SCHEMA" ? `"${ref.name}".projects` : "projects";
        if ((await c.query(`SELECT 1 FROM ${table} WHERE name = $1`, [name])).rowCount) found.push(ref.placement);
      } finally {
        await c.end();
      }
    }
    return found;
  }

  /** A write after the move: retried on TENANT_MOVING (a stale route is evicted by the refusal). */
  async function writeAfter(owner: string, name: string) {
    for (let i = 0; ; i++) {
      const res = await t.gql(`mutation($name: String!) { createProject(input: { name: $name }) { project { id } } }`, { token: owner, variables: { name } });
      if (res.body.errors?.[0]?.extensions?.code !== "TENANT_MOVING" || i >= 3) return res;
    }
  }

  it("a move that fails around the switch leaves one live copy: a later write lands where the directory says", async () => {
    const { tenantId, gid, owner } = await schemaTenant("split-brain");
    // Cache the SCHEMA route (the entry a stale replica would keep).
    expect((await t.gql(`{ projects(first: 5) { edges { node { name } } } }`, { token: owner })).body.errors).toBeUndefined();
    // The statements naming a placement in a tenants row (the directory's
    // switch, the old copy's mark in the same transaction, then the new
    // DATABASE copy's own mark after the COMMIT): the second to the sixth
    // fail, so the switch fails at the old copy's mark.
    const moved = await withFailing((_, n) => n >= 2 && n <= 6, (text) => NAMING.test(text), () =>
      t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "DATABASE" } } }),
    );
    expect(moved.body.errors?.[0]).toBeTruthy();
    const row = await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: tenantId } });
    expect(row.placement).toBe("SCHEMA");
    const w = await writeAfter(owner, "after-failed-move");
    expect(w.body.errors).toBeUndefined();
    expect(await whereIs(tenantId, "after-failed-move")).toEqual([row.placement]);
  });

  it("a failure after the switch does not fail the move: evicted, audited, the old copy reported as left, and dropped by the sweep", async () => {
    const { tenantId, gid, owner } = await schemaTenant("after-switch");
    const old = placementFor(tenantId, "SCHEMA");
    expect((await t.gql(`{ projects(first: 5) { edges { node { name } } } }`, { token: owner })).body.errors).toBeUndefined();
    const moved = await withFailing(() => true, (text) => text.startsWith("DROP SCHEMA"), () =>
      t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "DATABASE" } } }),
    );
    expect(moved.body.errors).toBeUndefined();
    expect(moved.body.data.moveTenant.tenant.placement).toBe("DATABASE");
    const audit = await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { tenantId, action: "tenant.move" } });
    expect(JSON.stringify(audit.metadata)).toContain("was not dropped");
    // The old copy is still there, refusing: a write lands in the new one only.
    const w = await writeAfter(owner, "after-switch-write");
    expect(w.body.errors).toBeUndefined();
    expect(await whereIs(tenantId, "after-switch-write")).toEqual(["DATABASE"]);
    // The leftover is durable (before: reported once, the old copy then stayed for good): the journal keeps it, and the sweep drops it.
    const journal = () => onMain<{ state: string }>(`SELECT state FROM placement_moves WHERE tenant = $1`, [tenantId]);
    expect(await journal()).toEqual([{ state: "switched" }]);
    expect(await t.clients.placements.admin.exists(old)).toBe(true);
    const swept = await settleMoves(t.clients.placements.admin);
    expect(swept.failures.filter((f) => f.includes(tenantId))).toEqual([]);
    expect(await t.clients.placements.admin.exists(old)).toBe(false);
    expect(await journal()).toEqual([]);
    expect(await whereIs(tenantId, "after-switch-write")).toEqual(["DATABASE"]);
  });

  it("the next move of the tenant retries what an earlier one left (an old copy not dropped)", async () => {
    const { tenantId, gid } = await schemaTenant("left-then-moved");
    const old = placementFor(tenantId, "SCHEMA");
    const moved = await withFailing(() => true, (text) => text.startsWith("DROP SCHEMA"), () =>
      t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "DATABASE" } } }),
    );
    expect(moved.body.errors).toBeUndefined();
    expect(await t.clients.placements.admin.exists(old)).toBe(true);
    // Back to POOLED: before anything else the move settles the earlier one's journal row (the old SCHEMA copy dropped).
    let seen = false;
    const back = await withFailing(
      () => false,
      (text) => (text.startsWith("DROP SCHEMA") && text.includes(old.name!) ? (seen = true) : false),
      () => t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "POOLED" } } }),
    );
    expect(back.body.errors).toBeUndefined();
    expect(seen).toBe(true);
    expect(await t.clients.placements.admin.exists(old)).toBe(false);
    expect(await onMain(`SELECT 1 FROM placement_moves WHERE tenant = $1`, [tenantId])).toEqual([]);
    // Both attempts and both moves are audited.
    const actions = (await t.clients.platform.auditLogEntry.findMany({ where: { tenantId, action: { startsWith: "tenant.move" } }, orderBy: { createdAt: "asc" } })).map((a) => a.action);
    expect(actions).toEqual(["tenant.move.start", "tenant.move", "tenant.move.start", "tenant.move"]);
  });

  it("a stale route naming a DATABASE target of a move under way is refused there until the switch: no write acknowledged in a copy then dropped", async () => {
    // A tenant that lived in the database before: its directory entry from then is kept (a replica's lost eviction).
    const slug = "stale-target";
    const res = await t.gql(PROVISION, { token: admin, variables: { input: { name: slug, slug, plan: "PRO", owner: { email: `owner@${slug}.test` }, placement: "DATABASE" } } });
    expect(res.body.errors).toBeUndefined();
    const gid = res.body.data.provisionTenant.tenant.id as string;
    const tenantId = (await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } })).id;
    const target = placementFor(tenantId, "DATABASE");
    made.push(target);
    const owner = await t.token(`owner@${slug}.test`, slug);
    expect((await t.gql(`mutation { createProject(input: { name: "seed" }) { project { id } } }`, { token: owner })).body.errors).toBeUndefined();
    expect((await t.gql(`{ projects(first: 10) { edges { node { name } } } }`, { token: owner })).body.errors).toBeUndefined();
    const key = tenantKey(tenantId, "info");
    const stale = await t.store.get(key);
    expect(stale).not.toBeNull();
    expect((await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "POOLED" } } })).body.errors).toBeUndefined();
    // Back to the same database: held at the switch's first statement (the copy made and verified), the stale entry
    // routes a write and a read there; then the switch fails, so the target is dropped.
    const orig = pg.Client.prototype.query;
    let write: Awaited<ReturnType<TestApp["gql"]>> | undefined;
    let read: Awaited<ReturnType<TestApp["gql"]>> | undefined;
    (pg.Client.prototype as { query: unknown }).query = function (this: pg.Client, text: unknown, ...rest: unknown[]) {
      const call = () => (orig as (...a: unknown[]) => unknown).call(this, text, ...rest);
      if (!write && typeof text === "string" && text.includes("pg_advisory_xact_lock(hashtext('placement-sync:'")) {
        return (async () => {
          await t.store.set(key, stale!, 300);
          write = await t.gql(`mutation { createProject(input: { name: "into-target" }) { project { id } } }`, { token: owner });
          await t.store.set(key, stale!, 300);
          read = await t.gql(`{ projects(first: 10) { edges { node { name } } } }`, { token: owner });
          throw Object.assign(new Error("injected: the switch failed"), { code: "57P01" });
        })();
      }
      return call();
    };
    let moved;
    try {
      moved = await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "DATABASE" } } });
    } finally {
      (pg.Client.prototype as { query: unknown }).query = orig;
    }
    expect(moved.body.errors?.[0]).toBeTruthy();
    expect((await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: tenantId } })).placement).toBe("POOLED");
    expect(await t.clients.placements.admin.exists(target)).toBe(false);
    // Before: the target's tenants row named the target, no fence there: the write was acknowledged, then dropped with the target.
    expect(write?.body.errors?.[0]?.extensions?.code).toBe("TENANT_MOVING");
    expect(write?.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(read?.body.errors?.[0]?.extensions?.code).toBe("TENANT_MOVING");
    await t.store.del(key);
    const names = (await t.gql(`{ projects(first: 10) { edges { node { name } } } }`, { token: owner })).body.data.projects.edges.map((e: { node: { name: string } }) => e.node.name);
    expect(names).toEqual(["seed"]);
    // And the move, repeated, switches: the target's row names it, the tenant is served there.
    const again = await writeAfterMove(gid, owner, "after-switch");
    expect(again).toEqual(["after-switch", "seed"]);
  });

  /** Moves the tenant to its DATABASE placement, writes `name` (retried on TENANT_MOVING), answers its projects' names. */
  async function writeAfterMove(gid: string, owner: string, name: string) {
    expect((await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "DATABASE" } } })).body.errors).toBeUndefined();
    expect((await writeAfter(owner, name)).body.errors).toBeUndefined();
    return (await t.gql(`{ projects(first: 10) { edges { node { name } } } }`, { token: owner })).body.data.projects.edges.map((e: { node: { name: string } }) => e.node.name).sort();
  }

  it("the route names the server: one database name on two servers gives two routes", () => {
    expect(routeOf({ placement: "DATABASE", server: "a", name: "tg_tenant_x" })).not.toBe(routeOf({ placement: "DATABASE", server: "b", name: "tg_tenant_x" }));
    expect(routeOf(POOLED)).toBe("POOLED");
  });

  /** A POOLED tenant with three projects, its global id and owner token. */
  async function pooledTenant(slug: string) {
    const p = await pooledWithProjects(slug);
    const gid = (await t.gql(`{ platform { tenants(first: 100) { edges { node { id slug } } } } }`, { token: admin })).body.data.platform.tenants.edges.find((e: { node: { slug: string } }) => e.node.slug === slug).node.id as string;
    return { ...p, gid, owner: await t.token(`owner@${slug}.test`, slug) };
  }

  /**
   * Moves the tenant to SCHEMA with its fence's backend terminated just
   * before the first mover statement `at` matches; meanwhile the tenant
   * writes a project `written` (acknowledged once the fence is gone).
   */
  async function moveLosingFence(gid: string, owner: string, written: string, at: (text: string, client: pg.Client, fence: pg.Client) => boolean) {
    const orig = pg.Client.prototype.query;
    let fence: pg.Client | undefined;
    let done = false;
    let acked = false;
    (pg.Client.prototype as { query: unknown }).query = function (this: pg.Client, text: unknown, ...rest: unknown[]) {
      const call = () => (orig as (...a: unknown[]) => unknown).call(this, text, ...rest);
      if (typeof text === "string" && text.includes("pg_advisory_lock(hashtext('tenant-move:'")) fence = this;
      if (!done && fence && typeof text === "string" && at(text, this, fence)) {
        done = true;
        return (async () => {
          const killer = new pg.Client({ connectionString: t.db.url });
          await killer.connect();
          await killer.query("SELECT pg_terminate_backend($1)", [(fence as unknown as { processID: number }).processID]);
          await killer.end();
          for (let i = 0; i < 50 && !acked; i++) {
            const r = await t.gql(`mutation($n: String!) { createProject(input: { name: $n }) { project { id } } }`, { token: owner, variables: { n: written } });
            acked = !r.body.errors;
          }
          return call();
        })();
      }
      return call();
    };
    try {
      const moved = await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "SCHEMA" } } });
      return { moved, acked, reached: done };
    } finally {
      (pg.Client.prototype as { query: unknown }).query = orig;
    }
  }

  /** The move failed, the tenant is still POOLED, and the write acknowledged while the fence was lost is there. */
  async function expectKept(tenantId: string, owner: string, written: string, r: Awaited<ReturnType<typeof moveLosingFence>>) {
    expect(r.reached).toBe(true);
    expect(r.acked).toBe(true);
    // Abandoned, not broken: a coded, retryable answer (the move may be repeated), never INTERNAL_SERVER_ERROR.
    expect(r.moved.body.errors?.[0]?.extensions?.code).toBe("TENANT_MOVING");
    expect(r.moved.headers.get("retry-after")).toBe("1");
    expect((await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: tenantId } })).placement).toBe("POOLED");
    const read = await t.gql(`{ projects(first: 100) { edges { node { name } } } }`, { token: owner });
    expect(read.body.data.projects.edges.map((e: { node: { name: string } }) => e.node.name)).toContain(written);
  }

  it("a move whose write fence is lost is abandoned: a write acknowledged meanwhile is not lost", async () => {
    const { tenantId, gid, owner } = await pooledTenant("fence-lost");
    // After the copy, before the switch (the copy's counters recounted in the target): the fence's backend is terminated and the tenant writes.
    const r = await moveLosingFence(gid, owner, "while-unfenced", (text, client, fence) => client !== fence && text.startsWith(RECOUNT));
    await expectKept(tenantId, owner, "while-unfenced", r);
  });

  it("a fence lost after its last check, before the switch commits: the switch fails, a write acknowledged meanwhile is not lost", async () => {
    const { tenantId, gid, owner } = await pooledTenant("fence-lost-late");
    // The switch's first statement (it takes the directory sync's lock): every check is behind it.
    const r = await moveLosingFence(gid, owner, "while-unfenced-late", (text) => text.includes("pg_advisory_xact_lock(hashtext('placement-sync:'"));
    await expectKept(tenantId, owner, "while-unfenced-late", r);
  });

  it("a move whose source changed after the snapshot (a write past the fence) is abandoned, the tenant unchanged", async () => {
    const { tenantId, to } = await pooledWithProjects("past-fence");
    const orig = pg.Client.prototype.query;
    let done = false;
    (pg.Client.prototype as { query: unknown }).query = function (this: pg.Client, text: unknown, ...rest: unknown[]) {
      const call = () => (orig as (...a: unknown[]) => unknown).call(this, text, ...rest);
      // After the copy (its counters recounted in the target), before the verification.
      if (!done && typeof text === "string" && text.startsWith(RECOUNT)) {
        done = true;
        // A writer that does not take the fence (as the main database's owner), after the snapshot.
        return onMain(`INSERT INTO projects (tenant_id, name, slug) VALUES ($1, 'unfenced', 'unfenced')`, [tenantId]).then(call);
      }
      return call();
    };
    try {
      await expect(moveTenantRows(t.clients.placements.admin, tenantId, POOLED, to)).rejects.toThrow(/projects/);
    } finally {
      (pg.Client.prototype as { query: unknown }).query = orig;
    }
    expect((await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: tenantId } })).placement).toBe("POOLED");
    expect(await t.clients.placements.admin.exists(to)).toBe(false);
    expect(await t.clients.platform.project.count({ where: { tenantId } })).toBe(4);
  });

  it("clearTenantCache is refused with TENANT_MOVING while a move holds the fence", async () => {
    const res = await t.gql(PROVISION, { token: admin, variables: { input: { name: "cache-fenced", slug: "cache-fenced", plan: "PRO", owner: { email: "owner@cache-fenced.test" } } } });
    expect(res.body.errors).toBeUndefined();
    const gid = res.body.data.provisionTenant.tenant.id as string;
    const tenantId = (await t.clients.platform.tenant.findFirstOrThrow({ where: { slug: "cache-fenced" } })).id;
    const clear = `mutation($i: ClearTenantCacheInput!) { clearTenantCache(input: $i) { tenant { id } } }`;
    const fence = new pg.Client({ connectionString: t.db.url });
    await fence.connect();
    try {
      await fence.query(`SELECT pg_advisory_lock(${moveFenceSql("$1::text")})`, [tenantId]);
      const refused = await t.gql(clear, { token: admin, variables: { i: { tenantId: gid } } });
      expect(refused.body.errors?.[0]?.extensions?.code).toBe("TENANT_MOVING");
    } finally {
      await fence.end();
    }
    expect((await t.gql(clear, { token: admin, variables: { i: { tenantId: gid } } })).body.errors).toBeUndefined();
  });

  it("an export running across a move is cut off (no ExportComplete) rather than ending with rows missing", async () => {
    const { tenantId, gid, owner } = await pooledTenant("export-moved");
    await onMain(`INSERT INTO projects (tenant_id, name, slug) SELECT $1, 'bulk-' || g, 'bulk-' || g FROM generate_series(1, 2500) g`, [tenantId]);
    const res = await t.app.fetch(`http://localhost/export`, { headers: { authorization: `Bearer ${owner}` } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let rest = "";
    let projects = 0;
    let complete = false;
    let moved = false;
    for (;;) {
      const chunk = await reader.read().catch(() => ({ done: true as const, value: undefined }));
      if (chunk.done) break;
      rest += dec.decode(chunk.value, { stream: true });
      const parts = rest.split("\n");
      rest = parts.pop()!;
      for (const part of parts.filter(Boolean)) {
        const o = JSON.parse(part) as { type: string };
        if (o.type === "Project") projects++;
        if (o.type === "ExportComplete") complete = true;
      }
      if (!moved && projects > 0) {
        moved = true;
        expect((await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "SCHEMA" } } })).body.errors).toBeUndefined();
      }
    }
    expect(moved).toBe(true);
    // Complete only with every project (2503); a move mid-stream cuts it off instead.
    if (complete) expect(projects).toBe(2503);
    expect(complete).toBe(false);
  });

  it("a switch whose COMMIT is answered by a broken connection but committed: the move holds, nothing is dropped", async () => {
    const { tenantId, gid, owner } = await schemaTenant("ambiguous-commit");
    const orig = pg.Client.prototype.query;
    let switcher: pg.Client | undefined;
    let injected = false;
    (pg.Client.prototype as { query: unknown }).query = function (this: pg.Client, text: unknown, ...rest: unknown[]) {
      const call = () => (orig as (...a: unknown[]) => Promise<unknown>).call(this, text, ...rest);
      // The directory's switch (a compare-and-set: "... AND <route> = $5").
      if (typeof text === "string" && text.startsWith("UPDATE tenants SET placement = $2") && text.includes(" AND ")) switcher = this;
      if (text === "COMMIT" && switcher === this) {
        switcher = undefined;
        injected = true;
        return call().then(() => Promise.reject(Object.assign(new Error("injected: connection terminated"), { code: "57P01" })));
      }
      return call();
    };
    let moved;
    try {
      moved = await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement: "DATABASE" } } });
    } finally {
      (pg.Client.prototype as { query: unknown }).query = orig;
    }
    expect(injected).toBe(true);
    expect(moved.body.errors).toBeUndefined();
    const row = await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: tenantId } });
    expect(row.placement).toBe("DATABASE");
    expect(await t.clients.placements.admin.exists(placementOf(row))).toBe(true);
    const w = await writeAfter(owner, "after-ambiguous");
    expect(w.body.errors).toBeUndefined();
    expect(await whereIs(tenantId, "after-ambiguous")).toEqual(["DATABASE"]);
  });

  it("a move to POOLED does not bring back a platform admin the main database deleted, nor his platform powers", async () => {
    const boss = await t.clients.platform.user.create({ data: { email: "boss@offboarded.test", authSubject: "boss-offboarded", isPlatformAdmin: true } });
    const res = await t.gql(PROVISION, { token: admin, variables: { input: { name: "offboarded", slug: "offboarded", plan: "PRO", owner: { email: boss.email }, placement: "SCHEMA" } } });
    expect(res.body.errors).toBeUndefined();
    const tenantId = (await t.clients.platform.tenant.findFirstOrThrow({ where: { slug: "offboarded" } })).id;
    made.push(placementFor(tenantId, "SCHEMA"));
    // Offboarded: deleted from the main database; the placement keeps its copy of the identity, flag included.
    await onMain(`DELETE FROM users WHERE id = $1`, [boss.id]);
    await t.store.del(`u:sub:${boss.authSubject}`);
    const moved = await t.gql(MOVE, { token: admin, variables: { input: { tenantId: res.body.data.provisionTenant.tenant.id, placement: "POOLED" } } });
    expect(moved.body.errors).toBeUndefined();
    // Before: the users row came back with is_platform_admin = true and his token listed every tenant.
    expect(await onMain(`SELECT is_platform_admin FROM users WHERE id = $1`, [boss.id])).toEqual([{ is_platform_admin: false }]);
    await t.store.del(`u:sub:${boss.authSubject}`);
    const platform = await t.gql(`{ platform { tenants(first: 5) { edges { node { slug } } } } }`, { token: await t.token(boss.authSubject) });
    expect(platform.body.data?.platform ?? null).toBeNull();
  });
});

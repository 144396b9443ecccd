import { spawn } from "node:child_process";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { placementFor, placementOf, POOLED, type PlacementRef } from "../../src/db/placement-admin.ts";
import { moveFenceSql } from "../../src/db/placement-fence.ts";
import { moveTenantRows, settleMoves } from "../../src/db/placement-move.ts";
import { placementSyncLockSql } from "../../src/db/placement-sync.ts";
import type { TestApp } from "../helpers/app.ts";
import { eventually } from "../helpers/eventually.ts";
import { placementApp, sql } from "../helpers/placements.ts";
import { childEnv, ROOT } from "../helpers/server-process.ts";
import { tenantKey } from "../../src/infra/store.ts";

/**
 * A mover that dies mid-move (docs/placement.md, "Moving a tenant"): a real
 * process (test/helpers/move-child.ts) killed with SIGKILL at a point the
 * test holds it at with a real lock. The tenant must stay where it was (or
 * refused, never served by two copies), and the next move must finish,
 * replacing what the dead one left. Each test makes placements and starts a
 * process: minutes on a loaded machine, hence the timeouts.
 */
const PROVISION = `mutation($input: ProvisionTenantInput!) { provisionTenant(input: $input) { tenant { id } } }`;
const MOVE = `mutation($input: MoveTenantInput!) { moveTenant(input: $input) { tenant { id placement } movedRows } }`;
const CREATE = `mutation($name: String!) { createProject(input: { name: $name }) { project { id } } }`;
const NAMES = `{ projects(first: 100) { edges { node { name } } } }`;

describe("a move whose mover dies", () => {
  const app = placementApp();
  let t: TestApp;
  let admin: string;
  beforeAll(() => ({ t, admin } = app));

  async function tenant(slug: string, placement: "POOLED" | "DATABASE") {
    const res = await t.gql(PROVISION, { token: admin, variables: { input: { name: slug, slug, plan: "PRO", owner: { email: `owner@${slug}.test` }, placement } } });
    expect(res.body.errors).toBeUndefined();
    const tenantId = (await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } })).id;
    app.made.push(placementFor(tenantId, "SCHEMA"), placementFor(tenantId, "DATABASE"));
    const owner = await t.token(`owner@${slug}.test`, slug);
    for (const name of ["p1", "p2"]) expect((await t.gql(CREATE, { token: owner, variables: { name } })).body.errors).toBeUndefined();
    return { tenantId, gid: res.body.data.provisionTenant.tenant.id as string, owner };
  }

  /** A connection to the main database holding `lock` (SQL over $1, the tenant id), in a transaction left open. */
  async function holding(lock: string, tenantId: string) {
    const c = new pg.Client({ connectionString: t.db.url });
    await c.connect();
    await c.query("BEGIN");
    await c.query(`SELECT ${lock}`, [tenantId]);
    return c;
  }

  /** The mover's connections name themselves (PGAPPNAME), so the test sees where they wait. */
  const MOVER = "tg-move-child";

  /** Resolves once a connection of the mover (another process) waits for an advisory lock (it reached the point the test holds). */
  const moverWaiting = () =>
    eventually("the mover waiting at the test's lock", async () => {
      const [row] = await sql<{ n: number }>(t.db.url, `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = $1`, [MOVER]);
      return row!.n > 0;
    }, 60_000);

  /** Resolves once the dead mover's session locks (its move lock) are gone with its backends. */
  const moverGone = (tenantId: string) =>
    eventually("the dead mover's move lock released", async () => {
      const [row] = await sql<{ free: boolean }>(t.db.url, `SELECT pg_try_advisory_lock(hashtext('tenant-mover:' || $1::text)) AS free`, [tenantId]);
      // The try's own session ends with sql()'s connection, releasing it.
      return row!.free;
    }, 60_000);

  /** Starts a mover process, waits until it is held at the test's lock, and kills it (SIGKILL). */
  async function killMoverAt(tenantId: string, from: string, to: string, held: pg.Client) {
    const child = spawn(process.execPath, ["--import", "tsx", "test/helpers/move-child.ts", t.db.url, tenantId, from, to], { cwd: ROOT, env: childEnv({ PGAPPNAME: MOVER }) });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const exited = new Promise((r) => child.on("close", r));
    await Promise.race([moverWaiting(), exited.then(() => Promise.reject(new Error(`the mover ended before it was held: ${output}`)))]);
    child.kill("SIGKILL");
    await exited;
    await held.query("ROLLBACK");
    await held.end();
    await moverGone(tenantId);
  }

  const names = async (owner: string) => ((await t.gql(NAMES, { token: owner })).body.data?.projects?.edges ?? []).map((e: { node: { name: string } }) => e.node.name).sort();
  const placementNow = async (tenantId: string): Promise<PlacementRef> => placementOf(await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: tenantId } }));

  /** A move through the API, repeated while it answers TENANT_MOVING (the dead mover's fence may still be going away). */
  async function moveTo(gid: string, placement: string) {
    for (let i = 0; ; i++) {
      const res = await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement } } });
      if (res.body.errors?.[0]?.extensions?.code !== "TENANT_MOVING" || i >= 5) return res;
    }
  }

  it("killed after making its target (waiting for the fence): the tenant stays, and the next move replaces the half-made target", async () => {
    const { tenantId, gid, owner } = await tenant("crash-early", "POOLED");
    const target = placementFor(tenantId, "DATABASE");
    // A write in flight holds the fence shared: the mover waits there, its target created and migrated.
    await killMoverAt(tenantId, "POOLED", "DATABASE", await holding(`pg_advisory_lock_shared(${moveFenceSql("$1::text")})`, tenantId));
    expect(await t.clients.placements.admin.exists(target)).toBe(true);
    expect((await placementNow(tenantId)).placement).toBe("POOLED");
    expect((await t.gql(CREATE, { token: owner, variables: { name: "after-crash" } })).body.errors).toBeUndefined();
    const moved = await moveTo(gid, "DATABASE");
    expect(moved.body.errors).toBeUndefined();
    expect(moved.body.data.moveTenant.tenant.placement).toBe("DATABASE");
    expect(await names(owner)).toEqual(["after-crash", "p1", "p2"]);
    expect(await t.clients.platform.project.count({ where: { tenantId } })).toBe(0);
  }, 120_000);

  it("killed between the old copy's mark and the switch: the tenant is refused (never two copies), and the next move completes", async () => {
    const { tenantId, gid, owner } = await tenant("crash-late", "DATABASE");
    const source = await placementNow(tenantId);
    // The switch waits for the directory sync's lock: the DATABASE source is already marked as left.
    await killMoverAt(tenantId, "DATABASE", "SCHEMA", await holding(`pg_advisory_xact_lock(${placementSyncLockSql("$1::text")})`, tenantId));
    expect(placementOf(await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: tenantId } }))).toEqual(source);
    // Fails closed: the old copy names another placement, so its writes are refused, retryably.
    const refused = await t.gql(CREATE, { token: owner, variables: { name: "while-stranded" } });
    expect(refused.body.errors?.[0]?.extensions?.code).toBe("TENANT_MOVING");
    const moved = await moveTo(gid, "SCHEMA");
    expect(moved.body.errors).toBeUndefined();
    expect(moved.body.data.moveTenant.tenant.placement).toBe("SCHEMA");
    expect(await t.clients.placements.admin.exists(source)).toBe(false);
    expect((await t.gql(CREATE, { token: owner, variables: { name: "after-move" } })).body.errors).toBeUndefined();
    expect(await names(owner)).toEqual(["after-move", "p1", "p2"]);
  }, 120_000);

  it("a crash is journaled, and the sweep of unfinished moves heals it: the old copy's mark undone, the half-made target dropped", async () => {
    const { tenantId, owner } = await tenant("crash-swept", "DATABASE");
    const source = await placementNow(tenantId);
    const target = placementFor(tenantId, "SCHEMA");
    await killMoverAt(tenantId, "DATABASE", "SCHEMA", await holding(`pg_advisory_xact_lock(${placementSyncLockSql("$1::text")})`, tenantId));
    // The attempt is on record (before: a crash left no trace), and the tenant is refused (its copy marked as left).
    const journal = () => sql<{ state: string; from_placement: string; to_placement: string }>(t.db.url, `SELECT state, from_placement::text, to_placement::text FROM placement_moves WHERE tenant = $1`, [tenantId]);
    expect(await journal()).toEqual([{ state: "started", from_placement: "DATABASE", to_placement: "SCHEMA" }]);
    expect((await t.gql(CREATE, { token: owner, variables: { name: "while-stranded" } })).body.errors?.[0]?.extensions?.code).toBe("TENANT_MOVING");
    // The sweep (server start-up, every few minutes): the directory names the source, so its mark is undone and the target dropped.
    const swept = await settleMoves(t.clients.placements.admin);
    expect(swept.failures.filter((f) => f.includes(tenantId))).toEqual([]);
    expect(await journal()).toEqual([]);
    expect(await t.clients.placements.admin.exists(target)).toBe(false);
    expect(await placementNow(tenantId)).toEqual(source);
    // Served again where it is, without a move (before: refused until an operator repeated the move).
    expect((await t.gql(CREATE, { token: owner, variables: { name: "after-sweep" } })).body.errors).toBeUndefined();
    expect(await names(owner)).toEqual(["after-sweep", "p1", "p2"]);
  }, 120_000);

  it("a purge removes what a crashed move left (a half-made target, a staging schema): no copy of the purged tenant stays", async () => {
    const { tenantId, gid } = await tenant("crash-purged", "POOLED");
    const target = placementFor(tenantId, "DATABASE");
    await killMoverAt(tenantId, "POOLED", "DATABASE", await holding(`pg_advisory_lock_shared(${moveFenceSql("$1::text")})`, tenantId));
    // And the staging schema a move into the main database would have left, with a row in it.
    const staging = `tg_move_${placementFor(tenantId, "SCHEMA").name!.slice("tenant_".length)}`;
    await sql(t.db.url, `CREATE SCHEMA "${staging}"; CREATE UNLOGGED TABLE "${staging}".projects (LIKE public.projects); INSERT INTO "${staging}".projects SELECT * FROM public.projects WHERE tenant_id = '${tenantId}'`);
    expect(await t.clients.placements.admin.exists(target)).toBe(true);
    for (const op of ["scheduleTenantDeletion", "purgeTenant"]) {
      const res = await t.gql(`mutation($input: ${op[0]!.toUpperCase()}${op.slice(1)}Input!) { ${op}(input: $input) { __typename } }`, { token: admin, variables: { input: { tenantId: gid } } });
      expect(res.body.errors).toBeUndefined();
    }
    expect(await t.clients.placements.admin.exists(target)).toBe(false);
    expect((await sql<{ n: number }>(t.db.url, `SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1`, [staging]))[0]!.n).toBe(0);
  }, 120_000);

  it("a move whose move-lock session dies at its switch cannot commit it: a second move that took the lock keeps every row", async () => {
    const { tenantId, owner } = await tenant("lock-lost", "POOLED");
    const admin_ = t.clients.placements.admin;
    const target = placementFor(tenantId, "DATABASE");
    const orig = pg.Client.prototype.query;
    let locker: pg.Client | undefined;
    let hooked = false;
    let second: Promise<unknown> | undefined;
    const outcome: string[] = [];
    const settle = (name: string) => [() => outcome.push(`${name} ok`), (e: Error) => outcome.push(`${name} failed: ${e.message}`)] as const;
    (pg.Client.prototype as { query: unknown }).query = function (this: pg.Client, text: unknown, ...rest: unknown[]) {
      const call = () => (orig as (...a: unknown[]) => unknown).call(this, text, ...rest);
      if (typeof text === "string" && text.includes("tenant-mover:") && !locker) locker = this;
      if (!hooked && typeof text === "string" && text.includes(`pg_advisory_xact_lock(${placementSyncLockSql("$1::text")})`)) {
        hooked = true;
        // The first move is at its switch (copy verified). The session holding its move lock dies; a second move (a client retrying) runs to its end.
        return (async () => {
          await sql(t.db.url, `SELECT pg_terminate_backend($1)`, [(locker as unknown as { processID: number }).processID]);
          second = moveTenantRows(admin_, tenantId, POOLED, target).then(...settle("B"));
          await second;
          return call();
        })();
      }
      return call();
    };
    try {
      await moveTenantRows(admin_, tenantId, POOLED, target).then(...settle("A"));
    } finally {
      (pg.Client.prototype as { query: unknown }).query = orig;
    }
    await second;
    // Before: both succeeded, the first switching the directory to the second's (re-made, still empty) database: no project left.
    expect(outcome).toEqual(["B ok", expect.stringMatching(/^A failed: .*abandoned/)]);
    expect(await placementNow(tenantId)).toEqual(target);
    await t.store.del(tenantKey(tenantId, "info"));
    expect(await names(owner)).toEqual(["p1", "p2"]);
    // The first move left the second's target alone.
    expect(await admin_.exists(target)).toBe(true);
  });
});

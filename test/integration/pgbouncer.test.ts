import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool, type Databases } from "../../src/db/clients.ts";
import { checkServerRoles } from "../../src/infra/startup.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { databaseUrl } from "../helpers/db.ts";
import { createSqlCounter, messagesOf, ofPool } from "../helpers/sql-counter.ts";

/**
 * Issue 15 point 6: the server behind PgBouncer in transaction pooling mode
 * (`npm run test:pgbouncer`, TEST_PGBOUNCER_URL; `.ci/run` starts one on
 * 6433 in front of the PostgreSQL on 5432). A server connection is shared by
 * every client of its pool between transactions, so whatever a transaction
 * sets must end with it: the tenant settings are `set_config(..., true)`,
 * the roles come from the login users, nothing holds session state
 * (test/unit/pgbouncer-safety.test.ts checks src/ for it).
 */
const bouncer = process.env.TEST_PGBOUNCER_URL;

describe.runIf(bouncer)("behind PgBouncer (transaction pooling)", () => {
  let t: TestApp;
  let ids: Record<string, string>;
  let clients: Databases;
  const admin = () => new pg.Client({ connectionString: databaseUrl(bouncer!, "pgbouncer").replace("//", "//postgres@") });

  beforeAll(async () => {
    t = await createTestApp();
    clients = t.clients;
    ids = await tenantIdsBySlug(t);
  });
  afterAll(async () => {
    await t?.close();
  });

  it("the app and platform pools go through PgBouncer, in transaction mode, as their roles", async () => {
    await checkServerRoles(clients);
    const c = admin();
    await c.connect();
    try {
      const { rows } = await c.query("SHOW POOLS");
      const ours = rows.filter((r: { database: string }) => r.database === t.db.name);
      expect(ours.map((r: { user: string }) => r.user).sort()).toEqual(expect.arrayContaining(["tg_pgb_app", "tg_pgb_platform"]));
      for (const r of ours) expect(r.pool_mode).toBe("transaction");
    } finally {
      await c.end();
    }
  });

  it("a tenant's settings end with its transaction: the next one on the same server connections sees none", async () => {
    const pool = clients.appPools.PRO;
    const inTenant = async (tenantId: string) => {
      const c = await pool.connect();
      try {
        await c.query(`BEGIN; SELECT set_config('app.tenant_id', '${tenantId}', true), set_config('statement_timeout', '1234', true)`);
        const { rows } = await c.query("SELECT count(*)::int AS n FROM projects");
        await c.query("COMMIT");
        return rows[0].n as number;
      } finally {
        c.release();
      }
    };
    const outside = async () => {
      const { rows } = await pool.query(
        "SELECT coalesce(current_setting('app.tenant_id', true), '') AS tenant, current_setting('statement_timeout') AS timeout, (SELECT count(*)::int FROM projects) AS n",
      );
      return rows[0] as { tenant: string; timeout: string; n: number };
    };
    for (let round = 0; round < 5; round++) {
      const counts = await Promise.all([ids.acme!, ids.globex!, ids.wayne!, ids.acme!].map(inTenant));
      expect(counts.every((n) => n > 0)).toBe(true);
      const after = await Promise.all(Array.from({ length: 8 }, outside));
      for (const a of after) expect(a).toEqual({ tenant: "", timeout: "0", n: 0 });
    }
  });

  it("a session-level setting would leak to the next client of the server connection: what the above rules out", async () => {
    // A pool of its own, logged in as another user (`root`), so the leaked
    // setting stays on server connections of PgBouncer's (database, root)
    // pool, which no other test uses: the app's pools log in as tg_pgb_app
    // and the tests run in random order (shuffled, the leak reached the test
    // above through a shared server connection).
    const url = new URL(clients.appPools.PRO.options.connectionString!);
    url.username = "root";
    const pool = createPool(url.toString(), undefined, 4);
    try {
      await pool.query(`SELECT set_config('app.tenant_id', '${ids.acme}', false)`);
      const seen = await Promise.all(
        Array.from({ length: 10 }, async () => (await pool.query("SELECT coalesce(current_setting('app.tenant_id', true), '') AS t")).rows[0].t as string),
      );
      expect(seen).toContain(ids.acme);
    } finally {
      await pool.end();
    }
  });

  it("GraphQL through PgBouncer: writes, reads, and tenants stay apart", async () => {
    const acme = await t.memberToken("acme", "OWNER");
    const globex = await t.memberToken("globex", "OWNER");
    const created = await t.gql(`mutation { createProject(input: { name: "Via PgBouncer" }) { project { id name } } }`, { token: acme });
    expect(created.body.errors).toBeUndefined();
    const id = created.body.data.createProject.project.id as string;
    const mine = await t.gql(`query($id: ID!) { node(id: $id) { ... on Project { name } } }`, { token: acme, variables: { id } });
    expect(mine.body.data.node).toEqual({ name: "Via PgBouncer" });
    const theirs = await t.gql(`query($id: ID!) { node(id: $id) { ... on Project { name } } }`, { token: globex, variables: { id } });
    expect(theirs.body.data.node).toBeNull();
  });

  it("a read's last statement with its COMMIT in one message, and a planned read whole in one: answered, and the server connections keep nothing of it", async () => {
    const token = await t.memberToken("acme", "OWNER");
    const q = `{ projects(first: 5) { edges { node { id deploymentCount latestDeployment { id } deployments(first: 2) { edges { node { id } } } } } } }`;
    // Executed (a cursor is never SQL-planned): BEGIN + settings + facts; the
    // page's statement and COMMIT. SQL-planned: BEGIN + settings + facts, the
    // planned statement and COMMIT, one message (docs/request-path.md).
    const cases = [
      [q.replace("edges { node { id deploymentCount", "edges { cursor node { id deploymentCount"), 2],
      [q, 1],
    ] as const;
    const counter = createSqlCounter({ app: Object.values(clients.appPools) });
    try {
      for (let i = 0; i < 10; i++) {
        const [query, messages] = cases[i % 2]!;
        const { result, statements } = await counter.record(() => t.gql(query, { token }));
        expect(result.body.errors).toBeUndefined();
        expect(result.body.data.projects.edges.length).toBeGreaterThan(0);
        expect(messagesOf(ofPool(statements, "app"))).toBe(messages);
      }
    } finally {
      counter.detach();
    }
    for (const pool of Object.values(clients.appPools)) {
      const after = await Promise.all(
        Array.from({ length: 4 }, async () => (await pool.query("SELECT coalesce(current_setting('app.tenant_id', true), '') AS tenant, coalesce(current_setting('app.planned_read_admitted', true), '') AS gate, now() = statement_timestamp() AS outside, (SELECT count(*)::int FROM projects) AS n")).rows[0]),
      );
      for (const a of after) expect(a).toEqual({ tenant: "", gate: "", outside: true, n: 0 });
    }
  });

  it("the server refuses to start on a pool that is not its role (the migrator through PgBouncer)", async () => {
    const owner = new URL(databaseUrl(bouncer!, t.db.name));
    owner.username = "postgres";
    const pool = createPool(owner.toString(), undefined, 1);
    try {
      await expect(checkServerRoles({ pools: { app_pro: pool } })).rejects.toThrow(/runs as "postgres", not tenantgraph_app/);
    } finally {
      await pool.end();
    }
    // The single-URL mode's role switch is a startup parameter PgBouncer 1.18 refuses: a plain error, with the remedy.
    const viaOptions = createPool(owner.toString(), "tenantgraph_app", 1);
    try {
      await expect(checkServerRoles({ pools: { app_pro: viaOptions } })).rejects.toThrow(/APP_DATABASE_URL and PLATFORM_DATABASE_URL/);
    } finally {
      await viaOptions.end();
    }
  });
});

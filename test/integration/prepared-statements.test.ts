import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import { createDatabases, type Databases } from "../../src/db/clients.ts";
import { MAX_PREPARED_PER_CONNECTION } from "../../src/db/prepared-statements.ts";
import { createTestApp, tenantIdsBySlug, testAppDeps, type TestApp } from "../helpers/app.ts";
import { testDatabaseUrls } from "../helpers/db.ts";
import { BENCH_DASHBOARD, post } from "../helpers/sql-plans.ts";

/** A planned read's statements as pg_prepared_statements shows them: the dashboard's planned one and the facts. */
const PLANNED = (p: { statement: string }) => p.statement.includes(`'{"data":'`) && p.statement.includes('"deploymentCount"');
const FACTS = (p: { statement: string }) => p.statement.includes("app_request_facts(");

/**
 * Prepared statements on the request path (src/db/prepared-statements.ts,
 * docs/request-path.md "Prepared statements"): a planned read's statements
 * (its facts and its planned statement) are parsed once per connection and
 * bound after, so PostgreSQL plans them once
 * (a generic plan) instead of on every request. The pools have one
 * connection each, so every request of a plan's tenants runs on the same
 * connection, and the test database forces generic plans: one plan, made
 * once, serves acme and globex in turn, and each must still read its own
 * rows alone (RLS and the transaction's settings decide at execution).
 */
describe("prepared statements of planned reads", () => {
  let t: TestApp;
  let off: App;
  let ids: Record<string, string>;
  let tokens: Record<string, string>;

  beforeAll(async () => {
    t = await createTestApp({ pools: { FREE: 1, PRO: 1, ENTERPRISE: 1, platform: 2, live: 1 } });
    off = createApp(testAppDeps(t.clients, t.store, { config: { sqlPlans: false } }));
    ids = await tenantIdsBySlug(t);
    // globex on acme's plan: both on the PRO pool's one connection.
    await t.clients.platform.tenant.update({ where: { id: ids.globex! }, data: { plan: "PRO" } });
    const owner = new pg.Client({ connectionString: t.db.url });
    await owner.connect();
    await owner.query(`ALTER DATABASE "${new URL(t.db.url).pathname.slice(1)}" SET plan_cache_mode = force_generic_plan`);
    await owner.end();
    tokens = { acme: await t.memberToken("acme", "OWNER"), globex: await t.memberToken("globex", "OWNER") };
  });
  afterAll(async () => t?.close());

  /** What the PRO pool's connection holds prepared (its only connection: checked out between requests). */
  async function prepared(db: Databases = t.clients) {
    const client = await db.appPools.PRO.connect();
    try {
      const { rows } = await client.query<{ name: string; statement: string; generic_plans: string; custom_plans: string; mode: string }>(
        `SELECT name, statement, generic_plans, custom_plans, current_setting('plan_cache_mode') AS mode FROM pg_prepared_statements`,
      );
      return rows.map((r) => ({ ...r, generic: Number(r.generic_plans), custom: Number(r.custom_plans) }));
    } finally {
      client.release();
    }
  }

  const dashboard = (app: App, slug: string) => post(app, BENCH_DASHBOARD, { authorization: `Bearer ${tokens[slug]}` });

  it("one generic plan, parsed once on the connection, answers each tenant its own rows", async () => {
    const before = await prepared();
    const executions = (match: typeof PLANNED) => before.filter(match).reduce((n, p) => n + p.generic + p.custom, 0);
    const expected: Record<string, unknown> = {};
    for (const slug of ["acme", "globex"]) expected[slug] = JSON.parse((await dashboard(off, slug)).text);
    expect(expected.acme).not.toEqual(expected.globex);
    const rounds = 4;
    for (let i = 0; i < rounds; i++) {
      for (const slug of ["acme", "globex"]) {
        const res = await dashboard(t.app, slug);
        expect(res.status).toBe(200);
        expect(JSON.parse(res.text), `${slug}, round ${i}`).toEqual(expected[slug]);
      }
    }
    const all = await prepared();
    // Each statement named by the server, executed once per request: parsed once, bound 2 x rounds times.
    for (const match of [PLANNED, FACTS]) {
      const after = all.filter(match);
      expect(after).toHaveLength(1);
      expect(after[0]!.name).toMatch(/^tg_[0-9a-f]{32}$/);
      expect(after[0]!.mode).toBe("force_generic_plan");
      expect(after[0]!.generic + after[0]!.custom - executions(match)).toBe(2 * rounds);
      expect(after[0]!.generic).toBeGreaterThanOrEqual(2 * rounds);
    }
  });

  it("a statement deallocated behind the server's back is parsed again, the request answered", async () => {
    await dashboard(t.app, "acme");
    expect((await prepared()).some(PLANNED)).toBe(true);
    const client = await t.clients.appPools.PRO.connect();
    await client.query("DEALLOCATE ALL");
    client.release();
    const res = await dashboard(t.app, "acme");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toEqual(JSON.parse((await dashboard(off, "acme")).text));
    expect((await prepared()).filter(PLANNED)).toHaveLength(1);
  });

  it("a connection holds at most MAX_PREPARED_PER_CONNECTION, whatever texts clients make (aliases)", async () => {
    const distinct = MAX_PREPARED_PER_CONNECTION + 8;
    for (let i = 0; i < distinct; i++) {
      const res = await post(t.app, `{ p${i}: projects(first: 1) { edges { node { id } } } }`, { authorization: `Bearer ${tokens.acme}` });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.text).data[`p${i}`].edges).toHaveLength(1);
    }
    const held = await prepared();
    expect(held.filter((p) => p.statement.includes('"p0"'))).toEqual([]);
    expect(held.some((p) => p.statement.includes(`"p${distinct - 1}"`))).toBe(true);
    expect(held.length).toBeLessThanOrEqual(MAX_PREPARED_PER_CONNECTION);
  });

  it("DATABASE_PREPARED_STATEMENTS off: nothing is prepared, the answer is the same", async () => {
    const db = createDatabases({ ...testDatabaseUrls(t.db.url), pools: { FREE: 1, PRO: 1, ENTERPRISE: 1, platform: 1, live: 1 }, preparedStatements: false });
    try {
      const unnamed = createApp(testAppDeps(db, t.store));
      const res = await dashboard(unnamed, "acme");
      expect(res.status).toBe(200);
      expect(JSON.parse(res.text)).toEqual(JSON.parse((await dashboard(off, "acme")).text));
      expect(await prepared(db)).toEqual([]);
    } finally {
      await db.close();
    }
  });
});

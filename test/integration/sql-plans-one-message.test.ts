import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import type { Plan, Role } from "../../src/generated/prisma/enums.ts";
import { newSecret } from "../../src/modules/api-keys/api-key.service.ts";
import { DEFAULT_CACHE_TTL_SECONDS } from "../../src/infra/response-cache.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import { PLAN_STATEMENT_TIMEOUT_MS } from "../../src/tenancy/plans.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { BLOCKED_BY_ME, eventually } from "../helpers/eventually.ts";
import { createSqlCounter, messagesOf, ofPool, type RecordedStatement, type SqlCounter } from "../helpers/sql-counter.ts";
import { BENCH_DASHBOARD, isPlanned, post } from "../helpers/sql-plans.ts";

/**
 * An answer as a client reads it: its status and parsed body. The same
 * answer's key order differs with the executor (graphql-js puts `errors`
 * before `data`; graphql-jit, which takes a document from its second
 * execution on, after): compared as text, a test's order of execution
 * decided it (a CI run whose SQL_PLANS=off app met the document first).
 */
const answer = (r: { status: number; text: string }) => ({ status: r.status, body: JSON.parse(r.text) as unknown });

/**
 * One message for a planned read (docs/request-path.md; issue 13): a query
 * the SQL planner answers is planned for the caller the directory cache
 * proposes and sent as ONE message (BEGIN, the settings, the authorization
 * facts, the planned statement, COMMIT); its body is the answer only once
 * the facts that came back pass the same checks as before execution and
 * plan the same statement. Each revocation below is made in PostgreSQL
 * after the directory cached the caller, so the request reaches the planner
 * with a stale candidate (the recorded statements show the planned statement
 * ran): it must answer exactly what an app with SQL_PLANS=off answers in
 * the same situation, and would answer the discarded body if the facts
 * were not checked.
 */

/** A tenant of the test's own, with projects, deployments, an owner and an API key. */
interface Fixture {
  id: string;
  slug: string;
  userId: string;
  membershipId: string;
  token: string;
  keyId: string;
  key: Record<string, string>;
  bearer: Record<string, string>;
}

describe("one message for a planned read", () => {
  let t: TestApp;
  let off: App;
  let counter: SqlCounter;
  let admin: pg.Client;

  beforeAll(async () => {
    t = await createTestApp();
    off = createApp(testAppDeps(t.clients, t.store, { config: { sqlPlans: false } }));
    counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
    admin = new pg.Client({ connectionString: t.db.url });
    await admin.connect();
  });
  afterAll(async () => {
    counter?.detach();
    await admin?.end();
    await t?.close();
  });

  async function fixture(plan: Plan = "PRO", role: Role = "OWNER"): Promise<Fixture> {
    const db = t.clients.platform;
    const slug = `one-${randomBytes(4).toString("hex")}`;
    const tenant = await db.tenant.create({ data: { slug, name: `One ${slug}`, plan } });
    const email = `owner@${slug}.test`;
    const user = await db.user.create({ data: { email, authSubject: email, name: "Owner" } });
    const membership = await db.membership.create({ data: { tenantId: tenant.id, userId: user.id, role } });
    const base = Date.parse("2026-11-20T10:00:00.000Z");
    for (let i = 0; i < 3; i++) {
      const project = await db.project.create({ data: { tenantId: tenant.id, name: `P${i}`, slug: `p-${i}`, createdAt: new Date(base + i * 60_000) } });
      await db.deployment.createMany({
        data: Array.from({ length: 3 }, (_, d) => ({ tenantId: tenant.id, projectId: project.id, status: "READY" as const, createdById: user.id, createdAt: new Date(base + i * 60_000 + d * 1000) })),
      });
    }
    const { prefix, secret, secretHash } = newSecret();
    const key = await db.apiKey.create({ data: { tenantId: tenant.id, name: "one", role: "ADMIN", prefix, secretHash } });
    const token = await t.token(email, slug);
    return {
      id: tenant.id,
      slug,
      userId: user.id,
      membershipId: membership.id,
      token,
      keyId: key.id,
      key: { "x-api-key": secret },
      bearer: { authorization: `Bearer ${token}` },
    };
  }

  /** What `app` answers, with the statements it sent (app and platform pools). */
  async function recorded(app: App, headers: Record<string, string>, query = BENCH_DASHBOARD) {
    const { result, statements } = await counter.record(() => post(app, query, headers));
    return { ...result, app: ofPool(statements, "app"), platform: ofPool(statements, "platform") };
  }

  /** Requests until one is answered from the directory cache alone (no platform SQL): the caller is cached. */
  async function cached(app: App, headers: Record<string, string>, query = BENCH_DASHBOARD) {
    await eventually("the caller in the directory cache", async () => {
      const r = await recorded(app, headers, query);
      expect(r.status).toBe(200);
      return r.platform.length === 0;
    });
  }

  /** The opening's statement_timeout of each transaction the request opened. */
  const timeouts = (statements: RecordedStatement[]) =>
    statements.flatMap((s) => [...s.sql.matchAll(/set_config\('statement_timeout', '(\d+)'/g)].map((m) => Number(m[1])));

  /**
   * `revoke` made in PostgreSQL after the caller was cached (nothing
   * evicted): the planned app's answer, and the SQL_PLANS=off app's in the
   * same situation (`restore`d, cached again, revoked again).
   */
  async function stale(headers: Record<string, string>, revoke: () => Promise<unknown>, restore: () => Promise<unknown>, query = BENCH_DASHBOARD) {
    await cached(t.app, headers, query);
    await revoke();
    const on = await recorded(t.app, headers, query);
    await restore();
    await cached(off, headers, query);
    await revoke();
    const executed = await post(off, query, headers);
    return { on, executed };
  }

  /** The planned statement ran in the request's first message, with the opening: the candidate was planned, its body dropped or kept. */
  const sentInOneMessage = (statements: RecordedStatement[]) => {
    expect(isPlanned(statements)).toBe(true);
    const first = statements.filter((s) => s.message === statements[0]!.message);
    expect(first.map((s) => (isPlanned([s]) ? "planned" : s.sql.split(" ")[0]))).toEqual(["BEGIN", "planned", "COMMIT"]);
  };

  const code = (text: string) => (JSON.parse(text) as { errors?: { extensions?: { code?: string } }[] }).errors?.[0]?.extensions?.code;

  /** The planner's plannings so far, as the app's /metrics reports them (tenantgraph_sql_plan_total). */
  async function plannings(): Promise<number> {
    const text = await (await t.app.fetch("http://localhost/metrics")).text();
    return [...text.matchAll(/^tenantgraph_sql_plan_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  }

  it("answers a planned dashboard in ONE message, the same bytes as SQL_PLANS=off, for a member and an API key", async () => {
    const f = await fixture();
    for (const headers of [f.bearer, f.key]) {
      await cached(t.app, headers);
      // Planned once: the cached caller is PostgreSQL's, nothing planned again.
      const before = await plannings();
      const on = await recorded(t.app, headers);
      expect((await plannings()) - before).toBe(1);
      const executed = await post(off, BENCH_DASHBOARD, headers);
      expect(on.status).toBe(200);
      expect(on.text).toContain('"deploymentCount":3');
      expect(answer(on)).toEqual(answer(executed));
      expect(messagesOf(on.app)).toBe(1);
      sentInOneMessage(on.app);
      expect(on.app).toHaveLength(3);
    }
    // The gate (set by the facts statement) is transaction-local: no pooled
    // connection carries it into the next transaction.
    for (const pool of Object.values(t.clients.appPools)) {
      const clients = await Promise.all(Array.from({ length: pool.idleCount }, () => pool.connect()));
      try {
        for (const c of clients) expect((await c.query<{ v: string | null }>(`SELECT current_setting('app.planned_read_admitted', true) AS v`)).rows[0]!.v ?? "").toBe("");
      } finally {
        for (const c of clients) c.release();
      }
    }
  });

  it("a membership removed in PostgreSQL but still cached: refused as before, the body dropped", async () => {
    const f = await fixture();
    const { on, executed } = await stale(
      f.bearer,
      () => t.clients.platform.membership.deleteMany({ where: { tenantId: f.id, userId: f.userId } }),
      () => t.clients.platform.membership.create({ data: { tenantId: f.id, userId: f.userId, role: "OWNER" } }),
    );
    sentInOneMessage(on.app);
    expect(code(on.text)).toBe("TENANT_ACCESS_DENIED");
    expect(on.text).not.toContain("deploymentCount");
    expect(answer(on)).toEqual(answer(executed));
  });

  it("a tenant suspended in PostgreSQL but cached active: TENANT_SUSPENDED as before", async () => {
    const f = await fixture();
    const { on, executed } = await stale(
      f.bearer,
      () => t.clients.platform.tenant.update({ where: { id: f.id }, data: { status: "SUSPENDED" } }),
      () => t.clients.platform.tenant.update({ where: { id: f.id }, data: { status: "ACTIVE" } }),
    );
    sentInOneMessage(on.app);
    expect(code(on.text)).toBe("TENANT_SUSPENDED");
    expect(answer(on)).toEqual(answer(executed));
  });

  it("an API key revoked in PostgreSQL but cached valid: refused as before", async () => {
    const f = await fixture();
    const { on, executed } = await stale(
      f.key,
      () => t.clients.platform.apiKey.update({ where: { tenantId_id: { tenantId: f.id, id: f.keyId } }, data: { revokedAt: new Date() } }),
      () => t.clients.platform.apiKey.update({ where: { tenantId_id: { tenantId: f.id, id: f.keyId } }, data: { revokedAt: null } }),
    );
    sentInOneMessage(on.app);
    expect(code(on.text)).toBe("UNAUTHENTICATED");
    expect(answer(on)).toEqual(answer(executed));
  });

  it("a role lowered in PostgreSQL but cached: PostgreSQL's role holds (cache evicted), and a field above it gets execution's FORBIDDEN", async () => {
    const f = await fixture("PRO", "ADMIN");
    const demote = () => t.clients.platform.membership.update({ where: { tenantId_id: { tenantId: f.id, id: f.membershipId } }, data: { role: "VIEWER" } });
    const promote = () => t.clients.platform.membership.update({ where: { tenantId_id: { tenantId: f.id, id: f.membershipId } }, data: { role: "ADMIN" } });
    // The planned dashboard: the gate compares the role, so the statement
    // sent for the cached ADMIN did nothing; planned again for PostgreSQL's
    // VIEWER in a transaction of its own (the facts read again, then the
    // statement with its COMMIT); the stale role is evicted (the next
    // request's candidate is VIEWER).
    const dashboard = await stale(f.bearer, demote, promote);
    sentInOneMessage(dashboard.on.app);
    expect(messagesOf(dashboard.on.app)).toBe(3);
    expect(dashboard.on.status).toBe(200);
    expect(dashboard.on.text).toBe(dashboard.executed.text);
    await promote();
    await cached(t.app, f.bearer);
    await demote();
    await recorded(t.app, f.bearer);
    await eventually("the demoted role evicted from the directory cache", async () => (await new Directory(t.clients.platform, t.store).membership(f.id, f.userId))?.role === "VIEWER");
    // A field above the confirmed role (apiKeys is @auth(ADMIN)): planned for
    // nobody, executed for PostgreSQL's caller, whose role the enforcer refuses.
    await promote();
    const apiKeys = `{ apiKeys(first: 1) { totalCount } }`;
    const refused = await stale(f.bearer, demote, promote, apiKeys);
    expect(code(refused.on.text)).toBe("FORBIDDEN");
    expect(answer(refused.on)).toEqual(answer(refused.executed));
  });

  it("a plan changed in PostgreSQL but cached: the statement sent under the old plan's timeout gated off, planned again in a transaction of its own", async () => {
    const f = await fixture("PRO");
    const { on, executed } = await stale(
      f.bearer,
      () => t.clients.platform.tenant.update({ where: { id: f.id }, data: { plan: "FREE" } }),
      () => t.clients.platform.tenant.update({ where: { id: f.id }, data: { plan: "PRO" } }),
    );
    expect(on.status).toBe(200);
    expect(answer(on)).toEqual(answer(executed));
    sentInOneMessage(on.app);
    // The one message under PRO's statement timeout (its statement gated
    // off: FREE is not the plan it assumed), then the plan's own transaction
    // (facts read again) under FREE's, the statement with its COMMIT.
    expect(messagesOf(on.app)).toBe(3);
    expect(timeouts(on.app)).toEqual([PLAN_STATEMENT_TIMEOUT_MS.PRO, PLAN_STATEMENT_TIMEOUT_MS.FREE]);
    expect(on.app.filter((s) => isPlanned([s]))).toHaveLength(2);
  });

  it("a planned statement that fails inside the message: the transaction ended, answered as execution's failed root field", async () => {
    const f = await fixture();
    const busy = async () => (await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`)).rows[0]!.n;
    await cached(t.app, f.bearer);
    // The facts are read (no projects table in them), the planned statement is refused.
    await admin.query("REVOKE SELECT ON projects FROM tenantgraph_app");
    try {
      const on = await recorded(t.app, f.bearer);
      const executed = await post(off, BENCH_DASHBOARD, f.bearer);
      sentInOneMessage(on.app);
      expect(on.app.at(-1)!.sql).toBe("ROLLBACK");
      expect(on.text).toMatch(/^\{"data":null,"errors":\[\{"message":"[^"]+","locations":\[\{"line":1,"column":3\}\],"path":\["projects"\],"extensions":\{"code":"INTERNAL_SERVER_ERROR"/);
      expect(answer(on)).toEqual(answer(executed));
      expect(await busy()).toBe(0);
    } finally {
      await admin.query("GRANT SELECT ON projects TO tenantgraph_app");
    }
    // Every connection of the pool serves the next requests (none was left in the aborted transaction).
    for (let i = 0; i < 3; i++) {
      const next = await recorded(t.app, f.bearer);
      expect(next.status).toBe(200);
      expect(next.text).toContain('"deploymentCount":3');
    }
  });

  /**
   * `app`'s dashboard while `table` is locked by a connection of the test's
   * own, its statement waiting for the lock cancelled (57014, as a statement
   * timeout), never a sleep.
   */
  async function cancelledOn(app: App, headers: Record<string, string>, table: string) {
    await admin.query("BEGIN");
    try {
      await admin.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      const pending = recorded(app, headers);
      let waiting: number | undefined;
      await eventually(`a statement waiting for the lock on ${table}`, async () => {
        const { rows } = await admin.query<{ pid: number }>(BLOCKED_BY_ME);
        waiting = rows[0]?.pid;
        return waiting !== undefined;
      });
      await admin.query("SELECT pg_cancel_backend($1)", [waiting]);
      return await pending;
    } finally {
      await admin.query("ROLLBACK");
    }
  }

  it("the facts statement cancelled inside the message: QUERY_TIMEOUT, 503, as the opening message's", async () => {
    const f = await fixture();
    await cached(t.app, f.bearer);
    const on = await cancelledOn(t.app, f.bearer, "memberships");
    await cached(off, f.bearer);
    const executed = await cancelledOn(off, f.bearer, "memberships");
    sentInOneMessage(on.app);
    expect(on.status).toBe(503);
    expect(code(on.text)).toBe("QUERY_TIMEOUT");
    expect(on.text).not.toMatch(/SELECT|app_request_facts|memberships/);
    expect(answer(on)).toEqual(answer(executed));
  });

  it("the planned statement cancelled inside the message (the facts read and confirmed): QUERY_TIMEOUT on the root field, as before", async () => {
    const f = await fixture();
    await cached(t.app, f.bearer);
    const on = await cancelledOn(t.app, f.bearer, "projects");
    sentInOneMessage(on.app);
    expect(on.app.at(-1)!.sql).toBe("ROLLBACK");
    expect(code(on.text)).toBe("QUERY_TIMEOUT");
    expect(on.text).toMatch(/^\{"data":null,"errors":\[\{"message":"[^"]+","locations":\[\{"line":1,"column":3\}\],"path":\["projects"\]/);
  });

  /** How long `whileLocked` holds its lock at most: far longer than any answer that does not wait for it (FREE's statement timeout included). */
  const LOCK_HELD_MS = 20_000;

  /**
   * `app`'s answer while `table` is locked ACCESS EXCLUSIVE by a connection
   * of the test's own: the answer is awaited BEFORE the lock is released, so
   * one that waits for the lock cannot pass. Should it wait, the lock is
   * released after LOCK_HELD_MS (a failed assertion, not a hang):
   * `releasedFirst` says so.
   */
  async function whileLocked(app: App, headers: Record<string, string>, table: string) {
    const holder = new pg.Client({ connectionString: t.db.url });
    await holder.connect();
    let releasedFirst = false;
    let timer: NodeJS.Timeout | undefined;
    try {
      await holder.query("BEGIN");
      await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      timer = setTimeout(() => {
        releasedFirst = true;
        void holder.query("ROLLBACK");
      }, LOCK_HELD_MS);
      const answered = await recorded(app, headers);
      return { ...answered, releasedFirst };
    } finally {
      clearTimeout(timer);
      if (!releasedFirst) await holder.query("ROLLBACK");
      await holder.end();
    }
  }

  it("a membership removed in PostgreSQL but cached, the planned statement's table locked: refused at once, the statement gated off (no lock wait)", { timeout: 90_000 }, async () => {
    const f = await fixture("ENTERPRISE");
    await cached(t.app, f.bearer);
    await t.clients.platform.membership.deleteMany({ where: { tenantId: f.id, userId: f.userId } });
    const on = await whileLocked(t.app, f.bearer, "projects");
    expect(on.releasedFirst).toBe(false);
    sentInOneMessage(on.app);
    expect(code(on.text)).toBe("TENANT_ACCESS_DENIED");
    await t.clients.platform.membership.create({ data: { tenantId: f.id, userId: f.userId, role: "OWNER" } });
    await cached(off, f.bearer);
    await t.clients.platform.membership.deleteMany({ where: { tenantId: f.id, userId: f.userId } });
    const executed = await whileLocked(off, f.bearer, "projects");
    expect(executed.releasedFirst).toBe(false);
    expect(answer(on)).toEqual(answer(executed));
  });

  it("a plan changed in PostgreSQL (ENTERPRISE cached, FREE now), the table locked: the statement not run under ENTERPRISE's no timeout, FREE's applies", { timeout: 90_000 }, async () => {
    const f = await fixture("ENTERPRISE");
    const downgrade = () => t.clients.platform.tenant.update({ where: { id: f.id }, data: { plan: "FREE" } });
    await cached(t.app, f.bearer);
    await downgrade();
    const on = await whileLocked(t.app, f.bearer, "projects");
    // Answered while the lock is held: by FREE's statement timeout (the
    // planned statement in a transaction of its own), never by a wait
    // under ENTERPRISE's, which has none.
    expect(on.releasedFirst).toBe(false);
    sentInOneMessage(on.app);
    expect(timeouts(on.app)).toEqual([PLAN_STATEMENT_TIMEOUT_MS.ENTERPRISE, PLAN_STATEMENT_TIMEOUT_MS.FREE]);
    expect(code(on.text)).toBe("QUERY_TIMEOUT");
    await t.clients.platform.tenant.update({ where: { id: f.id }, data: { plan: "ENTERPRISE" } });
    await cached(off, f.bearer);
    await downgrade();
    const executed = await whileLocked(off, f.bearer, "projects");
    expect(answer(on)).toEqual(answer(executed));
  });

  it("an API key whose tenant lost api_access in PostgreSQL (feature override) while cached: refused as with SQL_PLANS=off", async () => {
    const f = await fixture("PRO");
    const { on, executed } = await stale(
      f.key,
      () => t.clients.platform.tenant.update({ where: { id: f.id }, data: { featureOverrides: ["advanced_analytics"] } }),
      () => t.clients.platform.tenant.update({ where: { id: f.id }, data: { featureOverrides: ["api_access", "advanced_analytics"] } }),
    );
    sentInOneMessage(on.app);
    expect(code(on.text)).toBe("FEATURE_NOT_AVAILABLE");
    expect(on.text).not.toContain("deploymentCount");
    expect(answer(on)).toEqual(answer(executed));
  });

  it("the rate limit lowered in PostgreSQL below the count used while cached: the recheck refuses as with SQL_PLANS=off", async () => {
    const f = await fixture("PRO");
    const { on, executed } = await stale(
      f.bearer,
      () => t.clients.platform.tenantLimitOverride.create({ data: { tenantId: f.id, resource: "API_REQUESTS_PER_MINUTE", limit: 0 } }),
      () => t.clients.platform.tenantLimitOverride.deleteMany({ where: { tenantId: f.id } }),
    );
    sentInOneMessage(on.app);
    expect(code(on.text)).toBe("RATE_LIMITED");
    expect(on.text).not.toContain("deploymentCount");
    // retryAfter counts the seconds to the window's reset on the wall clock: the two requests may fall either side of a second.
    const seconds = (text: string) => Number(/"retryAfter":(\d+)/.exec(text)?.[1]);
    expect(Math.abs(seconds(on.text) - seconds(executed.text))).toBeLessThanOrEqual(1);
    const sameWindow = (text: string) => text.replace(/"retryAfter":\d+/, '"retryAfter":0');
    expect({ status: on.status, text: sameWindow(on.text) }).toEqual({ status: executed.status, text: sameWindow(executed.text) });
  });

  it("the response cache looks a query up with the facts first: today's two messages", async () => {
    const cachedApp = await createTestApp({ responseCache: { ttlSeconds: DEFAULT_CACHE_TTL_SECONDS } });
    try {
      const cacheCounter = createSqlCounter({ app: Object.values(cachedApp.clients.appPools) });
      try {
        const demo = { authorization: `Bearer ${await cachedApp.memberToken("acme", "VIEWER")}` };
        const noCache = { ...demo, "cache-control": "no-cache" };
        await post(cachedApp.app, BENCH_DASHBOARD, noCache);
        const looked = await cacheCounter.record(() => post(cachedApp.app, BENCH_DASHBOARD, demo));
        expect(looked.result.cache).toBe("MISS");
        expect(messagesOf(looked.statements)).toBe(2);
        // No lookup (no-cache): the one message.
        const bypass = await cacheCounter.record(() => post(cachedApp.app, BENCH_DASHBOARD, noCache));
        expect(bypass.result.cache).toBe("BYPASS");
        expect(bypass.result.text).toBe(looked.result.text);
        expect(messagesOf(bypass.statements)).toBe(1);
      } finally {
        cacheCounter.detach();
      }
    } finally {
      await cachedApp.close();
    }
  });
});

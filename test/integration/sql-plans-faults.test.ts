import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { eventually } from "../helpers/eventually.ts";
import { BENCH_DASHBOARD, post } from "../helpers/sql-plans.ts";

/**
 * SQL-planned queries under faults (docs/sql-plans.md, "Under faults"),
 * each against the same fault on the executed path (an app with
 * `sqlPlans: false` over the same databases): the same status, codes and
 * Retry-After; never a partial body, nor another tenant's rows; the next
 * requests answered as before. The planned statement is made to wait by a
 * table lock the test holds (`projects`, which only that statement reads in
 * the request), so a fault lands on it and not on the opening message; the
 * waits end by PostgreSQL's own statement timeout (globex is FREE: 5 s) or
 * by the test's pg_terminate_backend, never a sleep.
 */

type Answer = Awaited<ReturnType<typeof post>> & { retryAfter: string | null };

/** The planner's counts on an app's /metrics, "outcome/reason". */
async function planOutcomes(app: App): Promise<Record<string, number>> {
  const text = await (await app.fetch("http://localhost/metrics")).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^tenantgraph_sql_plan_total\{outcome="(\w+)",reason="(\w+)"\} (\d+)/gm)) out[`${m[1]}/${m[2]}`] = Number(m[3]);
  return out;
}
const plannedCount = (o: Record<string, number>) => (o["planned/compiled"] ?? 0) + (o["planned/cached"] ?? 0);

describe("SQL-planned queries under faults, answered as the executed path answers them", () => {
  let t: TestApp;
  let off: App;
  let admin: pg.Client;
  const headers: Record<string, Record<string, string>> = {};
  /** Each tenant's dashboard before any fault (planned and executed agree on it). */
  const reference: Record<string, string> = {};

  async function ask(app: App, slug: string): Promise<Answer> {
    const res = await app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", ...headers[slug] },
      body: JSON.stringify({ query: BENCH_DASHBOARD }),
    });
    return { status: res.status, text: await res.text(), cache: res.headers.get("x-cache"), retryAfter: res.headers.get("retry-after") };
  }

  /** Holds `LOCK TABLE projects IN ACCESS EXCLUSIVE MODE` on a connection of the test's own until `fn` ends. */
  async function whileProjectsLocked<T>(fn: (holderPid: number) => Promise<T>): Promise<T> {
    const holder = new pg.Client({ connectionString: t.db.url });
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE projects IN ACCESS EXCLUSIVE MODE");
      const { rows } = await holder.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      return await fn(rows[0]!.pid);
    } finally {
      await holder.query("ROLLBACK").catch(() => {});
      await holder.end();
    }
  }

  /** Statements of the app waiting for the projects lock (the test's own connections aside). */
  async function waitingForProjects(): Promise<number> {
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query ~ 'projects'`,
    );
    return rows[0]!.n;
  }

  /** Every backend of the test's database but the test's own (`keep` and this one): the app's connections, idle or busy. */
  async function terminateAppBackends(keep: number[] = []): Promise<number> {
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND NOT (pid = ANY($1::int[]))`,
      [keep],
    );
    return rows[0]!.n;
  }

  /** A body that is either the tenant's whole dashboard or no data at all (a retryable error): never a part, never another's. */
  function expectWholeOrNothing(slug: string, a: Answer) {
    if (a.status === 200) {
      expect(a.text).toBe(reference[slug]);
      return;
    }
    const body = JSON.parse(a.text);
    expect(a.status).toBe(503);
    expect(a.retryAfter).toMatch(/^\d+$/);
    expect(body.data ?? null).toBeNull();
    expect(body.errors.map((e: any) => e.extensions.code)).toEqual(["SERVICE_UNAVAILABLE"]);
    expect(a.text).not.toMatch(/SELECT|projects c|tenant_id|terminat|at .*\.ts/i);
  }

  beforeAll(async () => {
    t = await createTestApp();
    off = createApp(testAppDeps(t.clients, t.store, { config: { sqlPlans: false } }));
    admin = new pg.Client({ connectionString: t.db.url });
    await admin.connect();
    for (const slug of ["acme", "globex"]) {
      headers[slug] = { authorization: `Bearer ${await t.memberToken(slug, "VIEWER")}` };
      // Directory entries warm and the plan compiled: the faults land on the planned statement (a cached plan).
      const planned = await ask(t.app, slug);
      const executed = await ask(off, slug);
      expect(planned.status).toBe(200);
      expect(planned.text).toBe(executed.text);
      reference[slug] = planned.text;
    }
    expect(reference.acme).not.toBe(reference.globex);
  });
  afterAll(async () => {
    await admin?.end();
    await t?.close();
  });

  it("a planned statement cancelled by the statement timeout (57014) answers QUERY_TIMEOUT as execution does, and the next request is answered", async () => {
    const before = await planOutcomes(t.app);
    // globex is FREE (5 s): the lock outlasts it, only the timeout ends the wait.
    const [planned, executed] = await whileProjectsLocked(() => Promise.all([ask(t.app, "globex"), ask(off, "globex")]));
    const after = await planOutcomes(t.app);
    expect(plannedCount(after) - plannedCount(before)).toBe(1);

    const body = JSON.parse(planned.text);
    expect(body.data).toBeNull();
    expect(body.errors).toHaveLength(1);
    expect(body.errors[0].extensions.code).toBe("QUERY_TIMEOUT");
    expect(body.errors[0].path).toEqual(["projects"]);
    expect(planned.text).not.toMatch(/SELECT|statement_timeout|canceling|at .*\.ts/i);
    // The executed path, under the same fault: the same answer.
    expect({ status: planned.status, retryAfter: planned.retryAfter, body }).toEqual({
      status: executed.status,
      retryAfter: executed.retryAfter,
      body: JSON.parse(executed.text),
    });

    expect(await ask(t.app, "globex")).toMatchObject({ status: 200, text: reference.globex });
  });

  it("planned statements whose connections PostgreSQL terminates answer SERVICE_UNAVAILABLE (503, Retry-After) as execution does, and the server recovers", async () => {
    const before = await planOutcomes(t.app);
    const answers = await whileProjectsLocked(async (holder) => {
      // Two tenants on each path, every statement parked on the lock; then every connection of the app is killed.
      const pending = (["acme", "globex"] as const).flatMap((slug) => [ask(t.app, slug).then((a) => ({ slug, on: true, a })), ask(off, slug).then((a) => ({ slug, on: false, a }))]);
      await eventually("the four statements waiting for the lock", async () => (await waitingForProjects()) === 4);
      expect(await terminateAppBackends([holder])).toBeGreaterThanOrEqual(4);
      return Promise.all(pending);
    });
    expect(plannedCount(await planOutcomes(t.app)) - plannedCount(before)).toBe(2);

    for (const { slug, a } of answers) {
      expect(a.status, `${slug}: ${a.text}`).toBe(503);
      expectWholeOrNothing(slug, a);
    }
    // The same codes and paths on both paths, for each tenant.
    const shape = (a: Answer) => ({ status: a.status, retry: !!a.retryAfter, errors: JSON.parse(a.text).errors.map((e: any) => [e.extensions.code, e.path]) });
    for (const slug of ["acme", "globex"]) {
      const [on, executed] = [true, false].map((p) => answers.find((x) => x.slug === slug && x.on === p)!.a);
      expect(shape(on!)).toEqual(shape(executed!));
    }

    // Recovered: every later request answered in full, planned.
    const again = await planOutcomes(t.app);
    for (const slug of ["acme", "globex", "acme", "globex"]) expect(await ask(t.app, slug)).toMatchObject({ status: 200, text: reference[slug] });
    for (const slug of ["acme", "globex"]) expect(await ask(off, slug)).toMatchObject({ status: 200, text: reference[slug] });
    expect(plannedCount(await planOutcomes(t.app)) - plannedCount(again)).toBe(4);
  });

  it("under load, with the app's connections killed mid-load: every answer whole or a retryable 503, on both paths, then full service", async () => {
    for (const app of [t.app, off]) {
      const answers: { slug: string; a: Answer }[] = [];
      let killed = 0;
      // Rounds of 8 concurrent dashboards (both tenants); in each, every connection is terminated as the first answer arrives.
      for (let round = 0; round < 5; round++) {
        let first = true;
        const batch = Array.from({ length: 8 }, (_, i) => {
          const slug = i % 2 ? "globex" : "acme";
          return ask(app, slug).then(async (a) => {
            if (first) {
              first = false;
              killed += await terminateAppBackends();
            }
            answers.push({ slug, a });
          });
        });
        await Promise.all(batch);
      }
      expect(killed).toBeGreaterThan(0);
      expect(answers).toHaveLength(40);
      for (const { slug, a } of answers) expectWholeOrNothing(slug, a);
      // Recovered: the next requests are answered in full.
      for (const slug of ["acme", "globex", "acme", "globex"]) expect(await ask(app, slug)).toMatchObject({ status: 200, text: reference[slug] });
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { createSqlCounter, type SqlCounter } from "../helpers/sql-counter.ts";

/**
 * Issue 18 point 2: deploymentStats (ADMIN, advanced_analytics): buckets
 * per UTC day or hour, counts by status, median and p95 QUEUED -> READY,
 * one aggregate statement, the caller's tenant only.
 */

const STATS = `query($from: DateTime!, $to: DateTime!, $interval: StatsInterval!) {
  deploymentStats(from: $from, to: $to, interval: $interval) { start byStatus { status count } medianReadySeconds p95ReadySeconds }
}`;

const D0 = Date.parse("2026-03-10T00:00:00.000Z");
const DAY = 86_400_000;
const at = (ms: number) => new Date(ms);

describe("deploymentStats", () => {
  let t: TestApp;
  let counter: SqlCounter;
  let adminAcme: string;

  const countsOf = (bucket: any) => Object.fromEntries(bucket.byStatus.map((s: any) => [s.status, s.count]));

  beforeAll(async () => {
    t = await createTestApp();
    counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
    adminAcme = await t.memberToken("acme", "ADMIN");
    const p = t.clients.platform;
    for (const slug of ["acme", "globex"]) {
      const tenant = await p.tenant.findUniqueOrThrow({ where: { slug } });
      const project = await p.project.create({ data: { tenantId: tenant.id, name: `stats ${slug}`, slug: `stats-${slug}` } });
      const row = (status: string, createdMs: number, readySeconds?: number) => ({
        tenantId: tenant.id,
        projectId: project.id,
        status: status as never,
        createdAt: at(createdMs),
        queuedAt: at(createdMs),
        readyAt: readySeconds === undefined ? null : at(createdMs + readySeconds * 1000),
      });
      await p.deployment.createMany({
        data: [
          // Day 0: four READY (10, 20, 30, 100 s), one ERROR, one QUEUED.
          row("READY", D0 + 3_600_000, 10),
          row("READY", D0 + 2 * 3_600_000, 20),
          row("READY", D0 + 2 * 3_600_000 + 60_000, 30),
          row("READY", D0 + 5 * 3_600_000, 100),
          row("ERROR", D0 + 6 * 3_600_000),
          row("QUEUED", D0 + 7 * 3_600_000),
          // Day 1: two BUILDING; day 2 nothing; the day before and after: outside the range.
          row("BUILDING", D0 + DAY + 60_000),
          row("BUILDING", D0 + DAY + 120_000),
          row("READY", D0 - 60_000, 5),
          row("READY", D0 + 3 * DAY, 5),
          // globex's only: a READY of 1,000 s on day 0 (never in acme's answer).
          ...(slug === "globex" ? [row("READY", D0 + 60_000, 1000), row("CANCELED", D0 + 120_000)] : []),
        ],
      });
    }
  });
  afterAll(async () => {
    counter?.detach();
    await t?.close();
  });

  it("counts by status per UTC day, with median and p95 QUEUED -> READY, the tenant's rows only, in one statement", async () => {
    const { result: r, statements } = await counter.record(() =>
      t.gql(STATS, { token: adminAcme, variables: { from: at(D0).toISOString(), to: at(D0 + 3 * DAY).toISOString(), interval: "DAY" } }),
    );
    expect(r.body.errors).toBeUndefined();
    const buckets = r.body.data.deploymentStats;
    expect(buckets.map((b: any) => b.start)).toEqual([0, 1, 2].map((i) => at(D0 + i * DAY).toISOString()));
    expect(countsOf(buckets[0])).toEqual({ QUEUED: 1, BUILDING: 0, READY: 4, ERROR: 1, CANCELED: 0 });
    expect(buckets[0].medianReadySeconds).toBeCloseTo(25, 6);
    // percentile_cont(0.95) of 10, 20, 30, 100: 30 + 0.85 * 70.
    expect(buckets[0].p95ReadySeconds).toBeCloseTo(89.5, 6);
    expect(countsOf(buckets[1])).toEqual({ QUEUED: 0, BUILDING: 2, READY: 0, ERROR: 0, CANCELED: 0 });
    expect(buckets[1].medianReadySeconds).toBeNull();
    expect(countsOf(buckets[2])).toEqual({ QUEUED: 0, BUILDING: 0, READY: 0, ERROR: 0, CANCELED: 0 });
    expect(buckets[2].p95ReadySeconds).toBeNull();
    const app = statements.filter((s) => s.pool === "app");
    expect(app.filter((s) => /FROM deployments/.test(s.sql))).toHaveLength(1);
    // The facts message that opens the transaction, the aggregate, COMMIT.
    expect(app).toHaveLength(3);
  });

  it("HOUR buckets", async () => {
    const r = await t.gql(STATS, { token: adminAcme, variables: { from: at(D0).toISOString(), to: at(D0 + DAY).toISOString(), interval: "HOUR" } });
    const buckets = r.body.data.deploymentStats;
    expect(buckets).toHaveLength(24);
    expect(countsOf(buckets[2]).READY).toBe(2);
    expect(buckets[2].medianReadySeconds).toBeCloseTo(25, 6);
    expect(buckets[1].medianReadySeconds).toBeCloseTo(10, 6);
    expect(buckets[3].medianReadySeconds).toBeNull();
  });

  it("a status change to READY through the API records the time", async () => {
    const dev = await t.memberToken("acme", "DEVELOPER");
    const project = (await t.gql(`{ projects(first: 1) { edges { node { id } } } }`, { token: dev })).body.data.projects.edges[0].node.id;
    const created = await t.gql(`mutation($p: ID!) { createDeployment(input: { projectId: $p }) { deployment { id } } }`, {
      token: dev,
      variables: { p: project },
    });
    const id = created.body.data.createDeployment.deployment.id;
    const ready = await t.gql(`mutation($id: ID!) { updateDeploymentStatus(input: { id: $id, status: READY }) { deployment { status } } }`, {
      token: dev,
      variables: { id },
    });
    expect(ready.body.errors).toBeUndefined();
    const now = Date.now();
    const r = await t.gql(STATS, {
      token: adminAcme,
      variables: { from: at(now - 3_600_000).toISOString(), to: at(now + 3_600_000).toISOString(), interval: "HOUR" },
    });
    const withReady = r.body.data.deploymentStats.filter((b: any) => countsOf(b).READY > 0);
    expect(withReady).toHaveLength(1);
    expect(withReady[0].medianReadySeconds).toBeGreaterThanOrEqual(0);
  });

  it("needs ADMIN and advanced_analytics; bad ranges are BAD_USER_INPUT naming the field", async () => {
    const vars = { from: at(D0).toISOString(), to: at(D0 + DAY).toISOString(), interval: "DAY" };
    const dev = await t.gql(STATS, { token: await t.memberToken("acme", "DEVELOPER"), variables: vars });
    expect(dev.body.errors?.[0]?.extensions).toMatchObject({ code: "FORBIDDEN", requires: "ADMIN" });
    const free = await t.gql(STATS, { token: await t.memberToken("globex", "OWNER"), variables: vars });
    expect(free.body.errors?.[0]?.extensions).toMatchObject({ code: "FEATURE_NOT_AVAILABLE", feature: "advanced_analytics", plan: "FREE" });
    expect(free.body.data).toBeNull();
    const backwards = await t.gql(STATS, { token: adminAcme, variables: { ...vars, to: vars.from } });
    expect(backwards.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "to" });
    const tooMany = await t.gql(STATS, { token: adminAcme, variables: { ...vars, to: at(D0 + 60 * DAY).toISOString(), interval: "HOUR" } });
    expect(tooMany.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "to" });
  });
});

import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { DEFAULT_CACHE_TTL_SECONDS } from "../../src/infra/response-cache.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { createSqlCounter, ofPool, type SqlCounter } from "../helpers/sql-counter.ts";
import { BENCH_DASHBOARD, isPlanned, post } from "../helpers/sql-plans.ts";

/**
 * SQL-planned queries (src/http/use-sql-plans.ts, docs/sql-plans.md)
 * against the same queries executed field by field (an app with
 * `sqlPlans: false` over the same databases and store): the response bodies
 * must be the same bytes, planned or not, and the planned ones must have
 * been answered by the one planned statement. `sql-plans-property.test.ts`
 * does the same for random selections, roles, API keys and tenants.
 */

const FRAGMENTS = `fragment P on Project { slug id n: name description updatedAt deploymentCount latestDeployment { __typename ...D }
    deployments(first: $m, filter: { status: [READY, ERROR, QUEUED] }, orderBy: { field: UPDATED_AT, direction: ASC }) { totalCount pageInfo { hasNextPage } edges { node { ...D } } } }
  fragment D on Deployment { id url commitSha branch status createdAt updatedAt createdBy { __typename id email name } }`;

/**
 * Cases answered by the plan. The second one's inline fragment after a
 * named one is where graphql-jit orders keys unlike graphql-js (its `c`
 * first); the plan collects fields as graphql-js and the spec do.
 */
const PLANNED: [string, string, Record<string, unknown>][] = [
  ["the bench's dashboard", BENCH_DASHBOARD, {}],
  [
    "aliases, __typename at every level, fragments, variables, totals and page info",
    `query Q($n: Int!, $m: Int = 3) { __typename ps: projects(first: $n, orderBy: { field: NAME, direction: ASC }) { __typename totalCount
       pageInfo { hasPreviousPage __typename hasNextPage } edges { __typename node { ...P ... on Project { c: createdAt } } } } } ${FRAGMENTS}`,
    { n: 3 },
  ],
  [
    "two pages of one field, merged selections",
    `{ a: projects(first: 2) { edges { node { id } } } b: projects(first: 1, orderBy: { field: CREATED_AT, direction: ASC }) { edges { node { name } } edges { node { slug name } } } }`,
    {},
  ],
  [
    "empty pages, date filters from variables, the default page size",
    `query($after: DateTime, $before: DateTime) { projects { pageInfo { hasNextPage } edges { node { deployments(first: 0) { totalCount edges { node { id } } }
       recent: deployments(filter: { createdAfter: $after, createdBefore: $before, status: [] }) { totalCount edges { node { createdAt } } } } } } }`,
    { after: "2026-11-03T14:00:00.000Z", before: "2026-11-03T16:30:00Z" },
  ],
  ["only totals and type names (no aggregate but the grouping)", `{ projects(first: 1) { totalCount __typename } }`, {}],
  ["no projects asked for", `{ projects(first: 0) { totalCount pageInfo { hasNextPage hasPreviousPage } edges { node { id } } } }`, {}],
];

const EXECUTED: [string, string, Record<string, unknown>][] = [
  ["a cursor", `{ projects(first: 2) { edges { cursor node { id } } } }`, {}],
  ["page info's cursors", `{ projects(first: 2) { pageInfo { endCursor } edges { node { id } } } }`, {}],
  ["a directive", `{ projects(first: 2) { edges { node @include(if: true) { id } } } }`, {}],
  ["a search", `{ projects(first: 2, filter: { search: "a" }) { edges { node { id } } } }`, {}],
  ["a field not declared", `{ projects(first: 2) { edges { node { latestDeployment { project { id } } } } } }`, {}],
  ["a root field not declared", `{ tenant { slug } projects(first: 1) { edges { node { id } } } }`, {}],
  ["a page size refused", `{ projects(first: 1000) { edges { node { id } } } }`, {}],
  ["a nested page size refused", `{ projects(first: 1) { edges { node { deployments(first: -1) { edges { node { id } } } } } } }`, {}],
  ["a deployment filter by project", `query($p: ID) { projects(first: 1) { edges { node { deployments(filter: { projectId: $p }) { totalCount } } } } }`, { p: "x" }],
];

describe("SQL-planned queries: the same bytes as execution", () => {
  let t: TestApp;
  let off: App;
  let counter: SqlCounter;
  const headers: Record<string, Record<string, string>> = {};

  beforeAll(async () => {
    t = await createTestApp();
    off = createApp(testAppDeps(t.clients, t.store, { config: { sqlPlans: false } }));
    counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
    for (const [name, slug] of [
      ["acme", "acme"],
      ["globex", "globex"],
    ]) {
      headers[name!] = { authorization: `Bearer ${await t.memberToken(slug!, "VIEWER")}` };
    }
    headers.admin = { authorization: `Bearer ${await t.adminToken()}` };
  });
  afterAll(async () => {
    counter?.detach();
    await t?.close();
  });

  async function both(query: string, h: Record<string, string>, variables: Record<string, unknown>) {
    // Each app once first: the caller's directory entries cached, and the
    // document executed before, so graphql-jit compiles it (src/http/use-jit.ts):
    // `interpreted` is graphql-js' answer, `executed` graphql-jit's.
    await post(t.app, query, h, variables);
    const interpreted = await post(off, query, h, variables);
    const on = await counter.record(() => post(t.app, query, h, variables));
    const executed = await post(off, query, h, variables);
    const statements = ofPool(on.statements, "app");
    return { on: on.result, interpreted, executed, planned: isPlanned(statements), statements };
  }

  it.each(PLANNED)("planned: %s", async (_name, query, variables) => {
    const r = await both(query, headers.acme!, variables);
    expect(r.planned).toBe(true);
    expect(r.on.status).toBe(200);
    expect(r.on.text).not.toContain('"errors"');
    expect(r.on.text).toBe(r.interpreted.text);
    if (!query.includes("...P ... on Project")) expect(r.on.text).toBe(r.executed.text);
    // BEGIN + settings + facts, the planned statement, its COMMIT: one message (docs/request-path.md, "One message for a planned read").
    expect(r.statements.map((s) => (isPlanned([s]) ? "planned" : s.sql.split(" ")[0]))).toEqual(["BEGIN", "planned", "COMMIT"]);
    expect(new Set(r.statements.map((s) => s.message)).size).toBe(1);
  });

  it.each(EXECUTED)("executed as usual: %s", async (_name, query, variables) => {
    const r = await both(query, headers.acme!, variables);
    expect(r.planned).toBe(false);
    expect(r.on.status).toBe(r.executed.status);
    expect(r.on.text).toBe(r.executed.text);
  });

  it("a caller the field's @auth refuses gets execution's error (a platform admin holds no tenant role)", async () => {
    const r = await both(BENCH_DASHBOARD, headers.admin!, {});
    expect(r.planned).toBe(false);
    expect(r.on.text).toBe(r.executed.text);
    expect(JSON.parse(r.on.text).errors[0].extensions.code).toBe("FORBIDDEN");
  });

  /** The planner's counts on the app's /metrics (tenantgraph_sql_plan_total), "outcome/reason". */
  async function planOutcomes(): Promise<Record<string, number>> {
    const text = await (await t.app.fetch("http://localhost/metrics")).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^tenantgraph_sql_plan_total\{outcome="(\w+)",reason="(\w+)"\} (\d+)/gm)) out[`${m[1]}/${m[2]}`] = Number(m[3]);
    return out;
  }
  const moved = (before: Record<string, number>, after: Record<string, number>) =>
    Object.fromEntries(Object.entries(after).flatMap(([k, n]) => (n - (before[k] ?? 0) ? [[k, n - (before[k] ?? 0)]] : [])));

  it("rebinds a cached plan's variables: first: 5 then first: 20 answer their own pages", async () => {
    const acme = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    const have = await t.clients.platform.project.count({ where: { tenantId: acme.id } });
    await t.clients.platform.project.createMany({
      data: Array.from({ length: Math.max(0, 22 - have) }, (_, i) => ({ tenantId: acme.id, name: `Rebound ${i}`, slug: `rebound-${i}-${randomUUID()}` })),
    });
    const query = `query Pages($n: Int!) { projects(first: $n) { totalCount pageInfo { hasNextPage } edges { node { id name } } } }`;
    const before = await planOutcomes();
    const five = await both(query, headers.acme!, { n: 5 });
    const twenty = await both(query, headers.acme!, { n: 20 });
    // `both` asks the planning app twice: the first request compiles the template, the three others bind it.
    expect(moved(before, await planOutcomes())).toEqual({ "planned/compiled": 1, "planned/cached": 3 });
    for (const r of [five, twenty]) {
      expect(r.planned).toBe(true);
      expect(r.on.text).toBe(r.executed.text);
    }
    const page = (text: string) => JSON.parse(text).data.projects;
    expect(page(five.on.text).edges).toHaveLength(5);
    expect(page(twenty.on.text).edges).toHaveLength(20);
    expect(page(twenty.on.text).edges.slice(0, 5)).toEqual(page(five.on.text).edges);
    expect(page(twenty.on.text).pageInfo.hasNextPage).toBe(true);
  });

  it("counts planned queries and fallbacks by reason on /metrics", async () => {
    const before = await planOutcomes();
    await post(t.app, BENCH_DASHBOARD, headers.acme!);
    await post(t.app, `{ projects(first: 2) { edges { node @include(if: true) { id } } } }`, headers.acme!);
    await post(t.app, `{ projects(first: 2) { edges { cursor node { id } } } }`, headers.acme!);
    await post(t.app, `{ projects(first: 2) { edges { cursor node { id } } } }`, headers.globex!);
    await post(t.app, `{ projects(first: 2, filter: { search: "a" }) { edges { node { id } } } }`, headers.acme!);
    const after = moved(before, await planOutcomes());
    expect((after["planned/compiled"] ?? 0) + (after["planned/cached"] ?? 0)).toBe(1);
    delete after["planned/compiled"];
    delete after["planned/cached"];
    expect(after).toEqual({ "fallback/directive": 1, "fallback/cursor": 2, "fallback/arguments": 1 });
  });

  it("another tenant's rows never appear, nor a creator the tenant does not see", async () => {
    const p = t.clients.platform;
    const [acme, globex] = await Promise.all(["acme", "globex"].map((slug) => p.tenant.findUniqueOrThrow({ where: { slug } })));
    // An acme-only user as the creator of a globex deployment: globex may not see them.
    const email = `acme-only-${randomUUID()}@plans.test`;
    const stranger = await p.user.create({ data: { email, authSubject: email, memberships: { create: { tenantId: acme!.id, role: "DEVELOPER" } } } });
    const project = await p.project.create({ data: { tenantId: globex!.id, name: "Stranger's", slug: `stranger-${randomUUID()}` } });
    await p.deployment.create({ data: { tenantId: globex!.id, projectId: project.id, status: "READY", createdById: stranger.id } });

    const r = await both(BENCH_DASHBOARD.replace("first: 20", "first: 100"), headers.globex!, {});
    expect(r.planned).toBe(true);
    expect(r.on.text).toBe(r.executed.text);
    const ids = (text: string) => [...text.matchAll(/"id":"([^"]+)"/g)].map((m) => Buffer.from(m[1]!, "base64").toString()).filter((s) => s.startsWith("Project:"));
    const own = (await p.project.findMany({ where: { tenantId: globex!.id } })).map((x) => `Project:${x.id}`);
    expect(ids(r.on.text).sort()).toEqual(own.sort());
    for (const x of await p.project.findMany({ where: { tenantId: acme!.id } })) expect(r.on.text).not.toContain(toGlobalId("Project", x.id));
    expect(r.on.text).not.toContain(email);
    const stranger_ = JSON.parse(r.on.text).data.projects.edges.find((e: any) => e.node.id === toGlobalId("Project", project.id));
    expect(stranger_.node.deployments.edges[0].node.createdBy).toBeNull();
  });
});

describe("SQL-planned queries under the response cache", () => {
  let t: TestApp;
  let off: App;
  let counter: SqlCounter;

  beforeAll(async () => {
    t = await createTestApp({ responseCache: { ttlSeconds: DEFAULT_CACHE_TTL_SECONDS } });
    off = createApp(testAppDeps(t.clients, t.store, { config: { sqlPlans: false } }));
    counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
  });
  afterAll(async () => {
    counter?.detach();
    await t?.close();
  });

  it("a MISS is planned and stored as executed, a HIT serves it, and a change is a planned MISS again", async () => {
    const warn = vi.spyOn(console, "warn");
    const viewer = { authorization: `Bearer ${await t.memberToken("acme", "VIEWER")}` };
    const admin = { authorization: `Bearer ${await t.memberToken("acme", "ADMIN")}` };
    const read = async (h: Record<string, string>) => {
      const { result, statements } = await counter.record(() => post(t.app, BENCH_DASHBOARD, h));
      await t.settle(); // the entry written
      return { ...result, planned: isPlanned(ofPool(statements, "app")) };
    };
    const fresh = async () => (await post(off, BENCH_DASHBOARD, viewer)).text;

    const miss = await read(viewer);
    expect(miss).toMatchObject({ cache: "MISS", planned: true, text: await fresh() });
    // The stored entry (the cache's __typename fields stripped) is the same answer, for every role.
    expect(await read(viewer)).toMatchObject({ cache: "HIT", planned: false, text: miss.text });
    expect(await read(admin)).toMatchObject({ cache: "HIT", planned: false, text: miss.text });

    const project = JSON.parse(miss.text).data.projects.edges[0].node.id;
    const developer = { authorization: `Bearer ${await t.memberToken("acme", "DEVELOPER")}` };
    const created = await post(t.app, `mutation($p: ID!) { createDeployment(input: { projectId: $p, branch: "plans" }) { deployment { id } } }`, developer, { p: project });
    const id = JSON.parse(created.text).data.createDeployment.deployment.id;
    const after = await read(admin);
    expect(after).toMatchObject({ cache: "MISS", planned: true, text: await fresh() });
    expect(after.text).toContain(id);
    expect(await read(viewer)).toMatchObject({ cache: "HIT", text: after.text });
    expect(warn.mock.calls.flat().join(" ")).not.toContain("useResponseCache");
    warn.mockRestore();
  });
});

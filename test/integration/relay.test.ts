import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { tenantRows } from "../helpers/placements.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";

/**
 * Relay behaviour over the seeded demo tenants: forward and backward pages,
 * ties in the sort key, rows inserted between page fetches, cursors that
 * were made for another list, sort or tenant, page-size limits, and
 * node/nodes over every Node type.
 */

type PageInfo = { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
type Page = { totalCount?: number; pageInfo: PageInfo; edges: { cursor: string; node: { id: string; createdAt?: string; name?: string } }[] };

const DEPLOYMENTS = `query D($first: Int, $after: String, $last: Int, $before: String, $orderBy: DeploymentOrder) {
  deployments(first: $first, after: $after, last: $last, before: $before, orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id createdAt } }
  }
}`;

const PROJECTS = `query P($first: Int, $after: String, $last: Int, $before: String, $orderBy: ProjectOrder) {
  projects(first: $first, after: $after, last: $last, before: $before, orderBy: $orderBy) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id name } }
  }
}`;

describe("Relay connections", () => {
  let t: TestApp;
  let token: string;
  let ownerToken: string;
  let globexToken: string;
  let acmeId: string;

  beforeAll(async () => {
    t = await createTestApp();
    token = await t.memberToken("acme", "VIEWER");
    ownerToken = await t.memberToken("acme", "OWNER");
    globexToken = await t.memberToken("globex", "VIEWER");
    acmeId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
  });
  afterAll(async () => {
    await t?.close();
  });

  async function page(query: string, variables: Record<string, unknown>, tk = token): Promise<Page> {
    const res = await t.gql(query, { variables, token: tk });
    expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
    return Object.values(res.body.data as Record<string, Page>)[0]!;
  }

  async function errorOf(query: string, variables: Record<string, unknown>, tk = token) {
    const res = await t.gql(query, { variables, token: tk });
    expect(res.body.errors).toHaveLength(1);
    return res.body.errors![0];
  }

  /** Every id of the acme deployments, in list order (createdAt DESC, id DESC), straight from the database. */
  async function allDeploymentIds(): Promise<string[]> {
    const rows = await t.clients.platform.deployment.findMany({
      where: { tenantId: acmeId },
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      select: { id: true },
    });
    return rows.map((r) => toGlobalId("Deployment", r.id));
  }

  async function walkForward(size: number, variables: Record<string, unknown> = {}, query = DEPLOYMENTS) {
    const ids: string[] = [];
    let after: string | null = null;
    const pages: Page[] = [];
    for (let i = 0; i < 100; i++) {
      const p = await page(query, { ...variables, first: size, after });
      pages.push(p);
      ids.push(...p.edges.map((e) => e.node.id));
      if (!p.pageInfo.hasNextPage) break;
      after = p.pageInfo.endCursor;
    }
    return { ids, pages };
  }

  async function walkBackward(size: number, variables: Record<string, unknown> = {}, query = DEPLOYMENTS) {
    const ids: string[] = [];
    let before: string | null = null;
    const pages: Page[] = [];
    for (let i = 0; i < 100; i++) {
      const p = await page(query, { ...variables, last: size, before });
      pages.push(p);
      ids.unshift(...p.edges.map((e) => e.node.id));
      if (!p.pageInfo.hasPreviousPage) break;
      before = p.pageInfo.startCursor;
    }
    return { ids, pages };
  }

  it("walks forward through every row once, in order, with correct pageInfo", async () => {
    const expected = await allDeploymentIds();
    expect(expected).toHaveLength(24);
    const { ids, pages } = await walkForward(5);
    expect(ids).toEqual(expected);
    expect(pages).toHaveLength(5);
    expect(pages[0]!.pageInfo).toMatchObject({ hasPreviousPage: false, hasNextPage: true });
    expect(pages[4]!.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false });
    expect(pages[4]!.edges).toHaveLength(4);
    expect(pages[0]!.totalCount).toBe(24);
    expect(pages[0]!.pageInfo.startCursor).toBe(pages[0]!.edges[0]!.cursor);
    expect(pages[0]!.pageInfo.endCursor).toBe(pages[0]!.edges[4]!.cursor);
  });

  it("walks backward with items in list order and correct pageInfo", async () => {
    const expected = await allDeploymentIds();
    const { ids, pages } = await walkBackward(5);
    expect(ids).toEqual(expected);
    // The last page of the list: the 5 oldest, still newest-first.
    expect(pages[0]!.edges.map((e) => e.node.id)).toEqual(expected.slice(-5));
    expect(pages[0]!.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false });
    // The first page reached backwards: only 4 rows, nothing before it.
    expect(pages[4]!.edges.map((e) => e.node.id)).toEqual(expected.slice(0, 4));
    expect(pages[4]!.pageInfo).toMatchObject({ hasPreviousPage: false, hasNextPage: true });
  });

  it("combines after with last, and first with before, as Relay's algorithm says", async () => {
    const expected = await allDeploymentIds();
    const forward = await walkForward(5);
    const cursorAt = (i: number) => forward.pages[Math.floor(i / 5)]!.edges[i % 5]!.cursor;
    // Between the 3rd and the 12th row: first 4 after row 2 and before row 11.
    const middle = await page(DEPLOYMENTS, { first: 4, after: cursorAt(2), before: cursorAt(11) });
    expect(middle.edges.map((e) => e.node.id)).toEqual(expected.slice(3, 7));
    expect(middle.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: true });
    const tail = await page(DEPLOYMENTS, { last: 3, after: cursorAt(2), before: cursorAt(11) });
    expect(tail.edges.map((e) => e.node.id)).toEqual(expected.slice(8, 11));
    const exact = await page(DEPLOYMENTS, { first: 20, after: cursorAt(2), before: cursorAt(6) });
    expect(exact.edges.map((e) => e.node.id)).toEqual(expected.slice(3, 6));
  });

  it("pages in ascending order and by another sort key", async () => {
    const expected = (await allDeploymentIds()).reverse();
    const asc = await walkForward(7, { orderBy: { field: "CREATED_AT", direction: "ASC" } });
    expect(asc.ids).toEqual(expected);
    const ascBack = await walkBackward(7, { orderBy: { field: "CREATED_AT", direction: "ASC" } });
    expect(ascBack.ids).toEqual(expected);
    const byName = await walkForward(1, { orderBy: { field: "NAME", direction: "ASC" } }, PROJECTS);
    const names = byName.pages.flatMap((p) => p.edges.map((e) => e.node.name!));
    expect(names).toEqual([...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    expect(names).toHaveLength(4);
  });

  it("breaks ties in the sort key by id: no row skipped or repeated", async () => {
    const project = await t.clients.platform.project.findFirstOrThrow({ where: { tenantId: acmeId, slug: "web" } });
    const same = new Date("2020-01-01T00:00:00.000Z");
    await t.clients.platform.deployment.createMany({
      data: Array.from({ length: 7 }, () => ({ tenantId: acmeId, projectId: project.id, createdAt: same, updatedAt: same })),
    });
    await t.clients.platform.project.createMany({
      data: Array.from({ length: 5 }, (_, i) => ({ tenantId: acmeId, name: "Tied name", slug: `tied-${i}`, createdAt: same })),
    });
    try {
      const expected = await allDeploymentIds();
      expect((await walkForward(2)).ids).toEqual(expected);
      expect((await walkBackward(3)).ids).toEqual(expected);
      const byName = await walkForward(2, { orderBy: { field: "NAME", direction: "DESC" } }, PROJECTS);
      expect(new Set(byName.ids).size).toBe(9);
      expect(byName.ids).toHaveLength(9);
      const byCreated = await walkBackward(2, { orderBy: { field: "CREATED_AT", direction: "ASC" } }, PROJECTS);
      expect(new Set(byCreated.ids).size).toBe(9);
    } finally {
      await t.clients.platform.deployment.deleteMany({ where: { tenantId: acmeId, createdAt: same } });
      await t.clients.platform.project.deleteMany({ where: { tenantId: acmeId, slug: { startsWith: "tied-" } } });
    }
  });

  it("is stable under inserts between page fetches", async () => {
    const before = await allDeploymentIds();
    const project = await t.clients.platform.project.findFirstOrThrow({ where: { tenantId: acmeId, slug: "api" } });
    const seen: string[] = [];
    let p = await page(DEPLOYMENTS, { first: 5 });
    seen.push(...p.edges.map((e) => e.node.id));
    const lastSeen = await t.clients.platform.deployment.findMany({
      where: { tenantId: acmeId },
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      skip: 4,
      take: 2,
    });
    // A row newer than everything (lands on page 1, already fetched: not
    // returned again) and rows between the rows still to come.
    const created = await Promise.all([
      t.clients.platform.deployment.create({ data: { tenantId: acmeId, projectId: project.id, createdAt: new Date() } }),
      t.clients.platform.deployment.create({
        data: { tenantId: acmeId, projectId: project.id, createdAt: new Date(lastSeen[1]!.createdAt.getTime() - 1) },
      }),
      t.clients.platform.deployment.create({ data: { tenantId: acmeId, projectId: project.id, createdAt: new Date(0) } }),
    ]);
    try {
      while (p.pageInfo.hasNextPage) {
        p = await page(DEPLOYMENTS, { first: 5, after: p.pageInfo.endCursor });
        seen.push(...p.edges.map((e) => e.node.id));
      }
      expect(new Set(seen).size).toBe(seen.length);
      for (const id of before) expect(seen).toContain(id);
      const [newest, middle, oldest] = created.map((d) => toGlobalId("Deployment", d.id));
      expect(seen).not.toContain(newest);
      expect(seen).toContain(middle);
      expect(seen[seen.length - 1]).toBe(oldest);
      expect(seen).toHaveLength(before.length + 2);
    } finally {
      await t.clients.platform.deployment.deleteMany({ where: { id: { in: created.map((d) => d.id) } } });
    }
  });

  it("refuses page sizes over 100 and negative sizes", async () => {
    for (const [vars, field] of [
      [{ first: 101 }, "first"],
      [{ last: 101 }, "last"],
      [{ first: -1 }, "first"],
      [{ first: 1, last: 1 }, "last"],
    ] as const) {
      const err = await errorOf(DEPLOYMENTS, vars);
      expect(err.extensions).toMatchObject({ code: "BAD_USER_INPUT", field });
    }
    const nested = await errorOf(`{ projects(first: 1) { edges { node { deployments(first: 500) { totalCount } } } } }`, {});
    expect(nested.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "first" });
    const ok = await page(DEPLOYMENTS, { first: 100 });
    expect(ok.edges).toHaveLength(24);
  });

  it("refuses cursors made for another sort, another list, or tampered with", async () => {
    const first = await page(DEPLOYMENTS, { first: 2 });
    const cursor = first.pageInfo.endCursor!;
    const otherSort = await errorOf(DEPLOYMENTS, { first: 2, after: cursor, orderBy: { field: "CREATED_AT", direction: "ASC" } });
    expect(otherSort.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "after" });
    const otherField = await errorOf(DEPLOYMENTS, { last: 2, before: cursor, orderBy: { field: "UPDATED_AT", direction: "DESC" } });
    expect(otherField.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "before" });
    const projectCursor = (await page(PROJECTS, { first: 1 })).pageInfo.endCursor!;
    const otherList = await errorOf(DEPLOYMENTS, { first: 2, after: projectCursor });
    expect(otherList.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "after" });

    const [body, mac] = cursor.split(".");
    const payload = JSON.parse(Buffer.from(body!, "base64url").toString());
    const forged = Buffer.from(JSON.stringify({ ...payload, v: "2000-01-01T00:00:00.000Z" })).toString("base64url");
    const flipped = cursor.slice(0, -1) + (cursor.endsWith("A") ? "B" : "A");
    for (const bad of [`${forged}.${mac}`, flipped, "not-a-cursor", "", "a.b.c", "x".repeat(5000)]) {
      const err = await errorOf(DEPLOYMENTS, { first: 2, after: bad });
      expect(err.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "after" });
      expect(err.message).not.toMatch(/prisma|sql|select/i);
    }
  });

  it("a cursor from another tenant positions nothing of that tenant into view", async () => {
    const globexPage = await page(DEPLOYMENTS, { first: 3 }, globexToken);
    const globexIds = new Set(
      (await t.clients.platform.deployment.findMany({ where: { tenant: { slug: "globex" } }, select: { id: true } })).map((d) =>
        toGlobalId("Deployment", d.id),
      ),
    );
    const acme = await page(DEPLOYMENTS, { first: 100, after: globexPage.pageInfo.endCursor }, token);
    for (const e of acme.edges) expect(globexIds.has(e.node.id)).toBe(false);
    const acmeAll = new Set(await allDeploymentIds());
    for (const e of acme.edges) expect(acmeAll.has(e.node.id)).toBe(true);
  });

  it("paginates nested connections backward too", async () => {
    const res = await t.gql(
      `{ projects(first: 1, orderBy: { field: CREATED_AT, direction: ASC }) { edges { node { id
          all: deployments(first: 6) { edges { node { id } } }
          tail: deployments(last: 2) { pageInfo { hasNextPage hasPreviousPage startCursor } edges { node { id } } }
          workflows(first: 5) { totalCount pageInfo { hasNextPage hasPreviousPage } edges { node { name project { id } } } }
      } } } }`,
      { token },
    );
    expect(res.body.errors).toBeUndefined();
    const node = res.body.data.projects.edges[0].node;
    const all = node.all.edges.map((e: any) => e.node.id);
    expect(node.tail.edges.map((e: any) => e.node.id)).toEqual(all.slice(4));
    expect(node.tail.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: true });
    const prev = await t.gql(
      `query($id: ID!, $before: String) { node(id: $id) { ... on Project { deployments(last: 2, before: $before) { pageInfo { hasPreviousPage hasNextPage } edges { node { id } } } } } }`,
      { token, variables: { id: node.id, before: node.tail.pageInfo.startCursor } },
    );
    expect(prev.body.errors).toBeUndefined();
    expect(prev.body.data.node.deployments.edges.map((e: any) => e.node.id)).toEqual(all.slice(2, 4));
    expect(prev.body.data.node.deployments.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: true });
    expect(node.workflows.totalCount).toBe(1);
    expect(node.workflows.edges[0].node.project.id).toBe(node.id);
  });

  it("node and nodes resolve every Node type, and nothing of another tenant", async () => {
    const db = t.clients.platform;
    const acme = { tenantId: acmeId };
    const globex = await db.tenant.findUniqueOrThrow({ where: { slug: "globex" } });
    const owner = await db.user.findUniqueOrThrow({ where: { email: "owner@acme.test" } });
    const ids: Record<string, string> = {
      Tenant: acmeId,
      User: owner.id,
      Membership: (await db.membership.findFirstOrThrow({ where: acme })).id,
      Project: (await db.project.findFirstOrThrow({ where: acme })).id,
      Deployment: (await db.deployment.findFirstOrThrow({ where: acme })).id,
      Workflow: (await db.workflow.findFirstOrThrow({ where: acme })).id,
      AuditLogEntry: (await db.auditLogEntry.findFirstOrThrow({ where: acme })).id,
    };
    const apiKey = await db.apiKey.create({
      data: { tenantId: acmeId, name: "relay key", role: "VIEWER", prefix: "tg_relay", secretHash: `relay-${Date.now()}` },
    });
    ids.ApiKey = apiKey.id;
    // globex's rows, where they live (its placement under TEST_PLACEMENTS=spread).
    const gdb = await tenantRows(t.clients, globex.id);
    const foreign: Record<string, string> = {
      Tenant: globex.id,
      Project: (await gdb.project.findFirstOrThrow({ where: { tenantId: globex.id } })).id,
      Deployment: (await gdb.deployment.findFirstOrThrow({ where: { tenantId: globex.id } })).id,
      Workflow: (await gdb.workflow.findFirstOrThrow({ where: { tenantId: globex.id } })).id,
      Membership: (await gdb.membership.findFirstOrThrow({ where: { tenantId: globex.id } })).id,
      AuditLogEntry: (await gdb.auditLogEntry.findFirstOrThrow({ where: { tenantId: globex.id } })).id,
      User: (await db.user.findUniqueOrThrow({ where: { email: "owner@globex.test" } })).id,
    };

    // Every type that implements Node is covered here.
    const intro = await t.gql(`{ __type(name: "Node") { possibleTypes { name } } }`, { token: ownerToken });
    const nodeTypes: string[] = intro.body.data.__type.possibleTypes.map((p: { name: string }) => p.name).sort();
    expect(nodeTypes.filter((n) => !(n in ids))).toEqual([]);

    const types = nodeTypes;
    const globalIds = types.map((type) => toGlobalId(type, ids[type]!));
    const res = await t.gql(`query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }`, {
      token: ownerToken,
      variables: { ids: globalIds },
    });
    expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
    expect(res.body.data.nodes).toEqual(types.map((type, i) => ({ __typename: type, id: globalIds[i] })));
    for (const [type, id] of Object.entries(ids)) {
      if (!types.includes(type)) continue;
      const one = await t.gql(`query($id: ID!) { node(id: $id) { __typename id } }`, {
        token: ownerToken,
        variables: { id: toGlobalId(type, id) },
      });
      expect(one.body.data.node, type).toEqual({ __typename: type, id: toGlobalId(type, id) });
    }

    // Another tenant's ids look exactly like ids that do not exist.
    const foreignIds = Object.entries(foreign).map(([type, id]) => toGlobalId(type, id));
    const missing = await t.gql(`query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, {
      token: ownerToken,
      variables: { ids: [...foreignIds, toGlobalId("Project", "00000000-0000-4000-8000-000000000000")] },
    });
    expect(missing.body.errors).toBeUndefined();
    expect(missing.body.data.nodes).toEqual(foreignIds.map(() => null).concat([null]));
    await db.apiKey.delete({ where: { tenantId_id: { tenantId: acmeId, id: apiKey.id } } });
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { tenantRows } from "../helpers/placements.ts";
import type { PrismaClient } from "../../src/generated/prisma/client.ts";

/**
 * SPEC section 5: an id (or cursor) of another tenant behaves exactly like
 * one that does not exist. The caller is a member of acme (A); the ids are
 * globex's (B).
 */

describe("ids and cursors of another tenant", () => {
  let t: TestApp;
  let tokenA: string;
  let tokenB: string;
  const A = { tenantId: "", projectIds: [] as string[], deploymentIds: [] as string[] };
  const B = { tenantId: "", projectIds: [] as string[], deploymentIds: [] as string[], workflowIds: [] as string[], userIds: [] as string[] };
  /** B's rows, where they live (its placement under TEST_PLACEMENTS=spread). */
  let dbB: PrismaClient;
  const gid = toGlobalId;
  const code = (res: { body: { errors?: any[] } }) => res.body.errors?.[0]?.extensions?.code;

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    for (const [slug, side] of [["acme", A], ["globex", B]] as const) {
      const p = await tenantRows(t.clients, slug);
      const tenant = await p.tenant.findUniqueOrThrow({ where: { slug } });
      side.tenantId = tenant.id;
      side.projectIds = (await p.project.findMany({ where: { tenantId: tenant.id }, select: { id: true } })).map((r) => r.id);
      side.deploymentIds = (await p.deployment.findMany({ where: { tenantId: tenant.id }, select: { id: true } })).map((r) => r.id);
    }
    dbB = await tenantRows(t.clients, B.tenantId);
    const p = dbB;
    B.workflowIds = (await p.workflow.findMany({ where: { tenantId: B.tenantId }, select: { id: true } })).map((r) => r.id);
    B.userIds = (await p.membership.findMany({ where: { tenantId: B.tenantId }, select: { userId: true } })).map((r) => r.userId);
    expect(A.projectIds.length).toBeGreaterThan(0);
    expect(B.projectIds.length).toBeGreaterThan(0);
    tokenA = await t.memberToken("acme", "OWNER");
    tokenB = await t.memberToken("globex", "OWNER");
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  const NODE = `query($id: ID!) { node(id: $id) { id __typename } }`;

  it("node(id) of B's project, deployment, workflow, tenant, user → null (like a made-up id)", async () => {
    const foreign = [
      gid("Project", B.projectIds[0]!),
      gid("Deployment", B.deploymentIds[0]!),
      gid("Tenant", B.tenantId),
      gid("User", B.userIds[0]!),
      ...(B.workflowIds[0] ? [gid("Workflow", B.workflowIds[0])] : []),
    ];
    const madeUp = gid("Project", "7d0c5a8e-1111-4222-8333-444455556666");
    const none = await t.gql(NODE, { token: tokenA, variables: { id: madeUp } });
    expect(none.body).toEqual({ data: { node: null } });
    for (const id of foreign) {
      const res = await t.gql(NODE, { token: tokenA, variables: { id } });
      expect(res.body).toEqual(none.body);
    }
    // The same ids resolve for B's own member (so they are real).
    const own = await t.gql(NODE, { token: tokenB, variables: { id: foreign[0] } });
    expect(own.body.data.node).toEqual({ id: foreign[0], __typename: "Project" });
  });

  it("nodes([idA, idB]) → [A, null]", async () => {
    const idA = gid("Project", A.projectIds[0]!);
    const idB = gid("Project", B.projectIds[0]!);
    const res = await t.gql(`query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, { token: tokenA, variables: { ids: [idA, idB] } });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.nodes).toEqual([{ id: idA }, null]);
    const mixed = await t.gql(`query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, {
      token: tokenA,
      variables: { ids: [gid("Deployment", B.deploymentIds[0]!), gid("Deployment", A.deploymentIds[0]!)] },
    });
    expect(mixed.body.data.nodes).toEqual([null, { id: gid("Deployment", A.deploymentIds[0]!) }]);
  });

  it("an upper-case UUID inside an id is the same id: node and nodes agree; a bad entry of nodes names ids[i] (review-1745 F4)", async () => {
    const idA = gid("Project", A.projectIds[0]!);
    const upper = Buffer.from(`Project:${A.projectIds[0]!.toUpperCase()}`).toString("base64");
    const node = await t.gql(`query($id: ID!) { node(id: $id) { id } }`, { token: tokenA, variables: { id: upper } });
    expect(node.body.data.node).toEqual({ id: idA });
    const nodes = await t.gql(`query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, { token: tokenA, variables: { ids: [idA, upper] } });
    expect(nodes.body.data.nodes).toEqual([{ id: idA }, { id: idA }]);
    const bad = await t.gql(`query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, { token: tokenA, variables: { ids: [idA, "!!nope"] } });
    expect(bad.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "ids[1]" });
    expect(JSON.stringify(bad.body)).not.toContain("!!nope");
  });

  it("updateProject on B's project → NOT_FOUND, like a made-up id, and nothing changes", async () => {
    const before = await dbB.project.findFirstOrThrow({ where: { tenantId: B.tenantId, id: B.projectIds[0] } });
    const run = (id: string) =>
      t.gql(`mutation($id: ID!) { updateProject(input: { id: $id, name: "Hijacked" }) { project { id name } } }`, {
        token: tokenA,
        variables: { id },
      });
    const foreign = await run(gid("Project", B.projectIds[0]!));
    const madeUp = await run(gid("Project", "7d0c5a8e-1111-4222-8333-444455556666"));
    expect(code(foreign)).toBe("NOT_FOUND");
    expect(foreign.body.errors![0].message).toBe(madeUp.body.errors![0].message);
    expect(foreign.body.data ?? null).toEqual(madeUp.body.data ?? null);
    const after = await dbB.project.findFirstOrThrow({ where: { tenantId: B.tenantId, id: B.projectIds[0] } });
    expect(after.name).toBe(before.name);
    expect(after.updatedAt).toEqual(before.updatedAt);
  });

  it("createDeployment with B's projectId → NOT_FOUND and nothing is written", async () => {
    // Every deployment of the shared tables (the caller's) and of B's placement.
    const count = async () => (await t.clients.platform.deployment.count()) + (dbB === t.clients.platform ? 0 : await dbB.deployment.count());
    const before = await count();
    const res = await t.gql(`mutation($p: ID!) { createDeployment(input: { projectId: $p, branch: "x" }) { deployment { id } } }`, {
      token: tokenA,
      variables: { p: gid("Project", B.projectIds[0]!) },
    });
    expect(code(res)).toBe("NOT_FOUND");
    expect(await count()).toBe(before);
  });

  it("deployments(filter: { projectId: B's }) → empty", async () => {
    const res = await t.gql(`query($p: ID) { deployments(first: 50, filter: { projectId: $p }) { totalCount edges { node { id } } } }`, {
      token: tokenA,
      variables: { p: gid("Project", B.projectIds[0]!) },
    });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.deployments).toEqual({ totalCount: 0, edges: [] });
    // Project.deployments through B's node is unreachable: node is null.
    const nested = await t.gql(`query($id: ID!) { node(id: $id) { ... on Project { deployments(first: 5) { totalCount } } } }`, {
      token: tokenA,
      variables: { id: gid("Project", B.projectIds[0]!) },
    });
    expect(nested.body.data.node).toBeNull();
  });

  it("a cursor minted in B yields only A's rows in A", async () => {
    const page = await t.gql(`{ deployments(first: 2) { pageInfo { endCursor } edges { cursor node { id } } } }`, { token: tokenB });
    const cursorB: string = page.body.data.deployments.pageInfo.endCursor;
    expect(cursorB).toBeTruthy();
    const allA = new Set(A.deploymentIds.map((id) => gid("Deployment", id)));
    const allB = new Set(B.deploymentIds.map((id) => gid("Deployment", id)));
    const res = await t.gql(`query($after: String) { deployments(first: 100, after: $after) { edges { node { id } } } }`, {
      token: tokenA,
      variables: { after: cursorB },
    });
    expect(res.body.errors).toBeUndefined();
    const ids: string[] = res.body.data.deployments.edges.map((e: any) => e.node.id);
    for (const id of ids) {
      expect(allA.has(id)).toBe(true);
      expect(allB.has(id)).toBe(false);
    }
    // The same for projects.
    const pB = await t.gql(`{ projects(first: 1) { pageInfo { endCursor } } }`, { token: tokenB });
    const pa = await t.gql(`query($after: String) { projects(first: 100, after: $after) { edges { node { id } } } }`, {
      token: tokenA,
      variables: { after: pB.body.data.projects.pageInfo.endCursor },
    });
    const allAProjects = new Set(A.projectIds.map((id) => gid("Project", id)));
    for (const e of pa.body.data.projects.edges) expect(allAProjects.has(e.node.id)).toBe(true);
  });

  it("a tampered cursor → BAD_USER_INPUT", async () => {
    const page = await t.gql(`{ deployments(first: 1) { pageInfo { endCursor } } }`, { token: tokenA });
    const cursor: string = page.body.data.deployments.pageInfo.endCursor;
    const [body, mac] = cursor.split(".");
    const payload = JSON.parse(Buffer.from(body!, "base64url").toString());
    payload.id = B.deploymentIds[0];
    const forged = `${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${mac}`;
    for (const after of [forged, `${cursor}x`, "garbage", `${body}.`]) {
      const res = await t.gql(`query($after: String) { deployments(first: 5, after: $after) { edges { node { id } } } }`, {
        token: tokenA,
        variables: { after },
      });
      expect(code(res)).toBe("BAD_USER_INPUT");
      expect(res.body.data?.deployments ?? null).toBeNull();
    }
  });

  it("a global id of another type or garbage → null / no leak", async () => {
    for (const id of [gid("Deployment", B.projectIds[0]!), "not-base64!", gid("Project", "not-a-uuid")]) {
      const res = await t.gql(NODE, { token: tokenA, variables: { id } });
      expect(res.body.data?.node ?? null).toBeNull();
      expect(JSON.stringify(res.body)).not.toContain(B.projectIds[0]!);
    }
  });
});

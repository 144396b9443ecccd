import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { placementOf } from "../../src/db/placement-admin.ts";
import { routeOf } from "../../src/db/placement-route.ts";
import { readEvents } from "../../src/modules/live/event-read.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { sseSubscribe, type LiveSubscription } from "../helpers/live-client.ts";
import { createDeployment as deploy } from "../helpers/live-server.ts";
import { spreadDemoTenants, spreadPlacements, tenantRows, writeTenantRows } from "../helpers/placements.ts";

/**
 * Live updates of placed tenants (issue 15 point 2, docs/placement.md): a
 * SCHEMA or DATABASE tenant's events are read in its placement, so its
 * subscribers get them like a POOLED tenant's, and no event or row of one
 * placement ever reaches a subscriber of another. acme stays POOLED, globex
 * is in a schema, wayne in a database of its own.
 */

const DEPLOYMENTS = `subscription { deploymentUpdated { id status project { id name } createdBy { email } } }`;
const AUDIT = `subscription { auditLogAppended { id action actorLabel } }`;
const SLUGS = ["acme", "globex", "wayne"] as const;

let t: TestApp;
let dropPlacements: (() => Promise<void>) | undefined;
const open: LiveSubscription[] = [];

beforeAll(async () => {
  t = await createTestApp();
  // Under TEST_PLACEMENTS=spread the test app has placed them already.
  if (!spreadPlacements()) dropPlacements = await spreadDemoTenants(t.clients);
}, 120_000);

afterAll(async () => {
  for (const s of open) s.close();
  await dropPlacements?.();
  await t?.close();
});

async function subscribe(query: string, token: string) {
  const s = await sseSubscribe((url, init) => t.app.fetch(url, init), "http://localhost/graphql", { query }, { authorization: `Bearer ${token}` });
  open.push(s);
  expect(s.status).toBe(200);
  return s;
}

async function firstProject(slug: string): Promise<{ id: string; name: string }> {
  const r = await t.gql(`{ projects(first: 1) { edges { node { id name } } } }`, { token: await t.memberToken(slug, "DEVELOPER") });
  return r.body.data.projects.edges[0].node;
}

const createDeployment = (slug: string, projectId: string) => deploy(t, slug, { projectId, branch: "live" });

describe("live updates of placed tenants", () => {
  it("the demo tenants are spread: acme POOLED, globex SCHEMA, wayne DATABASE", async () => {
    const rows = await t.clients.platform.tenant.findMany({ where: { slug: { in: [...SLUGS] } } });
    const bySlug = Object.fromEntries(rows.map((r) => [r.slug, placementOf(r).placement]));
    expect(bySlug).toEqual({ acme: "POOLED", globex: "SCHEMA", wayne: "DATABASE" });
  });

  it("deploymentUpdated reaches a SCHEMA and a DATABASE tenant's subscribers, each only its own tenant's", async () => {
    const streams = Object.fromEntries(await Promise.all(SLUGS.map(async (slug) => [slug, await subscribe(DEPLOYMENTS, await t.memberToken(slug, "VIEWER"))] as const)));
    const projects = Object.fromEntries(await Promise.all(SLUGS.map(async (slug) => [slug, await firstProject(slug)] as const)));
    // Two deployments in every tenant, the tenants interleaved: a stream that
    // got another tenant's event would see it before its own second one.
    const made: Record<string, string[]> = { acme: [], globex: [], wayne: [] };
    for (let round = 0; round < 2; round++) {
      for (const slug of SLUGS) made[slug]!.push(await createDeployment(slug, projects[slug]!.id));
    }
    for (const slug of SLUGS) {
      const s = streams[slug]!;
      const got = [(await s.nextData()).deploymentUpdated, (await s.nextData()).deploymentUpdated];
      expect(got.map((d: { id: string }) => d.id), slug).toEqual(made[slug]);
      // The node as a query returns it, read in the tenant's placement (its project and creator too).
      expect(got[0]).toEqual({ id: made[slug]![0], status: "QUEUED", project: projects[slug], createdBy: { email: `developer@${slug}.test` } });
    }
    // A status change of a placed tenant's deployment is delivered too.
    const changed = await t.gql(`mutation($id: ID!) { updateDeploymentStatus(input: { id: $id, status: READY }) { deployment { id } } }`, {
      token: await t.memberToken("wayne", "DEVELOPER"),
      variables: { id: made.wayne![0] },
    });
    expect(changed.body.errors).toBeUndefined();
    expect((await streams.wayne!.nextData()).deploymentUpdated).toMatchObject({ id: made.wayne![0], status: "READY" });
  });

  it("auditLogAppended of a placed tenant carries its own entries only", async () => {
    const globex = await subscribe(AUDIT, await t.memberToken("globex", "ADMIN"));
    const wayne = await subscribe(AUDIT, await t.memberToken("wayne", "ADMIN"));
    const wayneDeployment = await createDeployment("wayne", (await firstProject("wayne")).id);
    const globexDeployment = await createDeployment("globex", (await firstProject("globex")).id);
    expect(wayneDeployment).not.toBe(globexDeployment);
    expect((await globex.nextData()).auditLogAppended).toMatchObject({ action: "deployment.create", actorLabel: "developer@globex.test" });
    expect((await wayne.nextData()).auditLogAppended).toMatchObject({ action: "deployment.create", actorLabel: "developer@wayne.test" });
  });

  it("a placed tenant's stream ends when its member is removed", async () => {
    const s = await subscribe(DEPLOYMENTS, await t.memberToken("globex", "VIEWER"));
    const viewer = (await t.clients.platform.user.findUniqueOrThrow({ where: { email: "viewer@globex.test" } })).id;
    const tenantId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "globex" } })).id;
    // Removed in the placement, as the tenant's own removal is (the next mutation's sync copies it to the directory).
    const db = await tenantRows(t.clients, tenantId);
    await db.membership.delete({ where: { tenantId_userId: { tenantId, userId: viewer } } });
    try {
      await createDeployment("globex", (await firstProject("globex")).id);
      const m = await s.next();
      expect([m.kind, m.payload?.errors?.[0]?.extensions?.code]).toEqual(["next", "TENANT_ACCESS_DENIED"]);
    } finally {
      await writeTenantRows(t.clients, tenantId, (p) => p.membership.create({ data: { tenantId, userId: viewer, role: "VIEWER" } }), { users: [viewer] });
    }
  });

  it("the event read in a placement returns that tenant's nodes only, and names its route", async () => {
    const ids = Object.fromEntries(
      await Promise.all(SLUGS.map(async (slug) => [slug, (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug } })).id] as const)),
    );
    const deploymentOf = async (slug: string) => (await (await tenantRows(t.clients, slug)).deployment.findFirstOrThrow({ where: { tenantId: ids[slug] } })).id;
    const events = await Promise.all(SLUGS.map(async (slug) => ({ type: "Deployment" as const, id: await deploymentOf(slug), at: 0 })));
    for (const slug of ["globex", "wayne"] as const) {
      const ref = placementOf(await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug } }));
      const source = { pool: t.clients.placements.live(ref), schema: ref.placement === "SCHEMA" ? ref.name : null };
      // Every tenant's deployment named in this tenant's read: its own alone comes back.
      const read = await readEvents(source, ids[slug]!, [], events);
      expect([...read.nodes.keys()], slug).toEqual([`Deployment:${events[SLUGS.indexOf(slug)]!.id}`]);
      expect(read.facts.status).toBe("ACTIVE");
      expect(read.route).toBe(routeOf(ref));
      // Another tenant's id on this placement's source: no tenant, no node.
      const foreign = await readEvents(source, ids.acme!, [], events);
      expect([foreign.facts.status, foreign.route, foreign.nodes.size]).toEqual([null, null, 0]);
    }
  });
});

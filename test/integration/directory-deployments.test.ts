import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { placementFor, type PlacementRef } from "../../src/db/placement-admin.ts";
import { relocatePooledTenant } from "../../src/db/placement-move.ts";
import type { Store } from "../../src/infra/store.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { placementOfTenant } from "../helpers/placements.ts";

/**
 * Two deployments (two main databases: the same slugs and subjects, other
 * ids) whose servers share one Redis, unprefixed: the bench and a second
 * bench or server on the same machine, staging beside production on one
 * managed Redis and one PostgreSQL server. The directory's entries of one
 * must never be the other's candidates (docs/revocation.md, "Whose entries").
 *
 * Before: deployment A's request took B's cached ids (tslug:<slug>,
 * u:sub:<subject>, the tenant entry with its placement). For a POOLED
 * tenant PostgreSQL then refused a member of A (403 TENANT_ACCESS_DENIED:
 * B's tenant id is not in A's database; the bench's refused members under
 * load, docs/placement.md). For a tenant B had placed in a DATABASE of the
 * same PostgreSQL server, A's request was routed into B's placement, whose
 * facts confirmed B's member: A's caller was served B's tenant.
 */
describe("two deployments sharing one Redis", () => {
  let a: TestApp;
  let b: TestApp;
  let shared: Store;
  let idsA: Record<string, string> = {};
  let idsB: Record<string, string> = {};
  const placed: PlacementRef[] = [];

  beforeAll(async () => {
    // One store, one prefix: the two apps read and write the same keys.
    shared = isolatedStore();
    [a, b] = await Promise.all([createTestApp({ store: shared }), createTestApp({ store: shared })]);
    [idsA, idsB] = await Promise.all([tenantIdsBySlug(a), tenantIdsBySlug(b)]);
    expect(idsA.acme).not.toBe(idsB.acme);
  });
  afterAll(async () => {
    for (const ref of placed) await b?.clients.placements.admin.drop(ref).catch(() => {});
    await Promise.allSettled([a?.close(), b?.close()]);
    await shared?.close();
  });

  const VIEWER = `query { viewer { role tenant { id slug } } projects(first: 50) { edges { node { name } } } }`;
  const gid = (id: string | undefined) => Buffer.from(`Tenant:${id}`).toString("base64");
  const names = (body: { data?: { projects?: { edges: { node: { name: string } }[] } } }) => body.data?.projects?.edges.map((e) => e.node.name) ?? [];

  it("a member of a POOLED tenant is answered by its own deployment after the other cached the same slug and subject", async () => {
    const owner = await b.memberToken("acme", "OWNER");
    const seenByB = await b.gql(VIEWER, { token: owner });
    expect(seenByB.body.errors).toBeUndefined();
    expect(seenByB.body.data.viewer.tenant.id).toBe(gid(idsB.acme));

    const seenByA = await a.gql(VIEWER, { token: await a.memberToken("acme", "OWNER") });
    expect(seenByA.body.errors).toBeUndefined();
    expect(seenByA.status).toBe(200);
    expect(seenByA.body.data.viewer).toMatchObject({ role: "OWNER", tenant: { id: gid(idsA.acme), slug: "acme" } });
  });

  it("a tenant the other deployment placed in a DATABASE of the same server is never served to this one's caller", async () => {
    // B's wayne in a database of its own on the server both use (already there with TEST_PLACEMENTS=spread); a project only B's wayne has.
    if ((await placementOfTenant(b.clients, idsB.wayne!)).ref.placement !== "DATABASE") {
      const ref = placementFor(idsB.wayne!, "DATABASE");
      placed.push(ref);
      await relocatePooledTenant(b.clients.placements.admin, idsB.wayne!, ref);
    }
    const CREATE = `mutation($input: CreateProjectInput!) { createProject(input: $input) { project { name } } }`;
    const made = await b.gql(CREATE, { token: await b.memberToken("wayne", "OWNER"), variables: { input: { name: "only-in-b", slug: "only-in-b" } } });
    expect(made.body.errors).toBeUndefined();
    const seenByB = await b.gql(VIEWER, { token: await b.memberToken("wayne", "OWNER") });
    expect(seenByB.body.data.viewer.tenant.id).toBe(gid(idsB.wayne));
    expect(names(seenByB.body)).toContain("only-in-b");

    const seenByA = await a.gql(VIEWER, { token: await a.memberToken("wayne", "OWNER") });
    expect(seenByA.body.errors).toBeUndefined();
    expect(seenByA.body.data.viewer.tenant.id).toBe(gid(idsA.wayne));
    expect(names(seenByA.body)).not.toContain("only-in-b");
  });
});

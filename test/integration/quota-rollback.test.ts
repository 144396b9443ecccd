import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";

/**
 * A window quota's reservation (DEPLOYMENTS_PER_HOUR, in the store) is given
 * back when the change is not kept, also when the resolver succeeded and the
 * mutation's transaction then rolled back (src/policy/enforcer.ts registers
 * the refund with TenantDb.afterRollback). Review-1330 F8: a payload read
 * cancelled after createDeployment's insert rolled the insert back but
 * kept the reservation (used 0 -> 1). The payload read waits for a lock the
 * test holds until globex's (FREE) 5 s statement timeout cancels it.
 */
describe("a window quota when the mutation rolls back after its resolver succeeded", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  const deploymentsUsed = async (token: string) => {
    const res = await t.gql(`{ usage { quotas { resource used } } }`, { token });
    expect(res.body.errors).toBeUndefined();
    return res.body.data.usage.quotas.find((q: { resource: string }) => q.resource === "DEPLOYMENTS_PER_HOUR").used as number;
  };

  it("refunds DEPLOYMENTS_PER_HOUR when the payload read fails and the insert is rolled back", async () => {
    const owner = await t.memberToken("globex", "OWNER");
    const project = await t.clients.platform.project.findFirstOrThrow({ where: { tenant: { slug: "globex" } } });
    const before = await t.clients.platform.deployment.count({ where: { projectId: project.id } });
    expect(await deploymentsUsed(owner)).toBe(0);

    const holder = new pg.Client({ connectionString: t.db.url });
    await holder.connect();
    let res: Awaited<ReturnType<TestApp["gql"]>>;
    try {
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE workflows IN ACCESS EXCLUSIVE MODE");
      res = await t.gql(
        `mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id project { workflows(first: 1) { totalCount } } } } }`,
        { token: owner, variables: { i: { projectId: toGlobalId("Project", project.id) } } },
      );
    } finally {
      await holder.query("ROLLBACK").catch(() => {});
      await holder.end();
    }
    expect(res.body.data ?? null).toBeNull();
    expect(res.body.errors?.[0].extensions.code).toBe("QUERY_TIMEOUT");
    expect(await t.clients.platform.deployment.count({ where: { projectId: project.id } })).toBe(before);
    expect(await deploymentsUsed(owner)).toBe(0);

    // A kept change keeps its reservation.
    const kept = await t.gql(`mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id } } }`, {
      token: owner,
      variables: { i: { projectId: toGlobalId("Project", project.id) } },
    });
    expect(kept.body.errors).toBeUndefined();
    expect(await deploymentsUsed(owner)).toBe(1);
  });
});

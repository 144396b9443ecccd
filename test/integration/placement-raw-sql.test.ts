import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { placementFor } from "../../src/db/placement-admin.ts";
import { relocatePooledTenant } from "../../src/db/placement-move.ts";
import { fromGlobalId, toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";

/**
 * review WR-1: the hand-written statements name their tables unqualified
 * (deployment.writes.ts with the audit entry of audit-sql.ts, the
 * dashboard's prefetch, the per-parent loaders) and rely on the request's
 * search_path. For a SCHEMA-placed tenant it is the tenant's schema alone
 * (src/tenancy/transaction-settings.ts): each statement must read and
 * write that schema's tables, never the main ones (public), whose rows of
 * the same names belong to the POOLED tenants.
 */
describe("raw SQL of a SCHEMA-placed tenant reads and writes its schema", () => {
  let t: TestApp;
  let globex: string;
  let schema: string;
  let main: pg.Client;

  beforeAll(async () => {
    t = await createTestApp();
    globex = (await tenantIdsBySlug(t)).globex!;
    const ref = placementFor(globex, "SCHEMA");
    schema = ref.name!;
    await relocatePooledTenant(t.clients.placements.admin, globex, ref);
    main = new pg.Client({ connectionString: t.db.url });
    await main.connect();
  }, 120_000);
  afterAll(async () => {
    await main?.end();
    await t?.clients.placements.admin.drop(placementFor(globex, "SCHEMA")).catch(() => {});
    await t?.close();
  });

  /** Rows of `table` for globex in its schema and in the main tables. */
  async function where(table: string, cond = "true", params: unknown[] = []) {
    const q = (s: string) => main.query(`SELECT count(*)::int AS n FROM ${s}.${table} WHERE tenant_id = $1 AND ${cond}`, [globex, ...params]);
    return { schema: (await q(`"${schema}"`)).rows[0].n as number, main: (await q("public")).rows[0].n as number };
  }

  it("createDeployment, updateDeploymentStatus and the dashboard's prefetch", async () => {
    const token = await t.memberToken("globex", "DEVELOPER");
    const projects = await t.gql(`{ projects(first: 1) { edges { node { id } } } }`, { token });
    const projectId = projects.body.data.projects.edges[0].node.id as string;
    expect(await where("projects")).toMatchObject({ main: 0 });

    const branch = `wr1-${Date.now()}`;
    const created = await t.gql(`mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id branch status } } }`, {
      token,
      variables: { i: { projectId, branch } },
    });
    expect(created.body.errors, JSON.stringify(created.body)).toBeUndefined();
    const id = fromGlobalId("id", created.body.data.createDeployment.deployment.id, "Deployment");
    expect(await where("deployments", "branch = $2", [branch])).toEqual({ schema: 1, main: 0 });
    expect(await where("audit_log", "action = 'deployment.create' AND target_id = $2", [toGlobalId("Deployment", id)])).toEqual({ schema: 1, main: 0 });

    const updated = await t.gql(`mutation($i: UpdateDeploymentStatusInput!) { updateDeploymentStatus(input: $i) { deployment { id status } } }`, {
      token,
      variables: { i: { id: toGlobalId("Deployment", id), status: "BUILDING" } },
    });
    expect(updated.body.errors, JSON.stringify(updated.body)).toBeUndefined();
    expect(updated.body.data.updateDeploymentStatus.deployment.status).toBe("BUILDING");
    expect(await where("deployments", "id = $2 AND status = 'BUILDING'", [id])).toEqual({ schema: 1, main: 0 });
    expect(await where("audit_log", "action = 'deployment.updateStatus'")).toEqual({ schema: 1, main: 0 });

    // The dashboard's page statement (the prefetch, with its COMMIT) and the per-parent LATERAL loader.
    const dashboard = await t.gql(
      `{ projects(first: 20) { edges { node { id deploymentCount latestDeployment { id branch } deployments(first: 5) { edges { node { id branch } } } } } } }`,
      { token },
    );
    expect(dashboard.body.errors, JSON.stringify(dashboard.body)).toBeUndefined();
    const node = dashboard.body.data.projects.edges.find((e: any) => e.node.id === projectId).node;
    expect(node.latestDeployment).toEqual({ id: toGlobalId("Deployment", id), branch });
    expect(node.deployments.edges.map((e: any) => e.node.branch)).toContain(branch);
    expect(node.deploymentCount).toBe((await where("deployments", "project_id = $2", [fromGlobalId("id", projectId, "Project")])).schema);
  });
});

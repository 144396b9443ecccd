import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { ownerClient } from "../helpers/db.ts";
import { tenantRows } from "../helpers/placements.ts";
import { createSqlCounter, ofPool, type RecordedStatement } from "../helpers/sql-counter.ts";

/**
 * The deployment mutations write their checks, row and audit entry in one
 * statement (src/modules/deployments/deployment.writes.ts): what Prisma's
 * three or four statements guaranteed must still hold. The payload is the
 * Deployment a read returns, field for field; the entry is the one
 * writeAudit wrote; an unknown or foreign project writes nothing; a row
 * and its entry land together or not at all; a failed change undoes itself
 * alone (a savepoint), not the mutation's other fields.
 */
describe("deployment writes", () => {
  let t: TestApp;
  let dev: string;
  let acmeId: string;
  let globexId: string;
  let projectId: string;

  const FIELDS = `id status url commitSha branch createdAt updatedAt createdBy { email } project { id slug }`;
  const CREATE = `mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { deployment { ${FIELDS} } } }`;
  const UPDATE = `mutation($input: UpdateDeploymentStatusInput!) { updateDeploymentStatus(input: $input) { deployment { ${FIELDS} } } }`;
  const NODE = `query($id: ID!) { node(id: $id) { ... on Deployment { ${FIELDS} } } }`;

  beforeAll(async () => {
    t = await createTestApp();
    dev = await t.memberToken("acme", "DEVELOPER");
    acmeId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
    globexId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "globex" } })).id;
    projectId = (await t.clients.platform.project.findFirstOrThrow({ where: { tenantId: acmeId } })).id;
  });
  afterAll(async () => {
    await t?.close();
  });

  const gql = async (query: string, variables: Record<string, unknown>) => (await t.gql(query, { token: dev, variables })).body;
  const deploymentCount = () => t.clients.platform.deployment.count();
  const auditCount = (action: string) => t.clients.platform.auditLogEntry.count({ where: { action } });

  it("createDeployment answers the Deployment a read answers, and its entry is writeAudit's", async () => {
    const input = { projectId: toGlobalId("Project", projectId), commitSha: "a1b2c3", branch: "main" };
    const created = await gql(CREATE, { input });
    expect(created.errors).toBeUndefined();
    const d = created.data.createDeployment.deployment;
    expect(d).toMatchObject({ status: "QUEUED", url: null, commitSha: "a1b2c3", branch: "main", project: { id: input.projectId } });
    expect(d.createdBy.email).toMatch(/@/);
    expect(d.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect((await gql(NODE, { id: d.id })).data.node).toEqual(d);

    const [, rawId] = Buffer.from(d.id, "base64").toString().split(":");
    const row = await t.clients.platform.deployment.findFirstOrThrow({ where: { tenantId: acmeId, id: rawId } });
    expect(row.createdAt.toISOString()).toBe(d.createdAt);
    expect(row.queuedAt).not.toBeNull();
    const entries = await t.clients.platform.auditLogEntry.findMany({ where: { tenantId: acmeId, targetId: d.id } });
    expect(entries).toHaveLength(1);
    const user = await t.clients.platform.user.findFirstOrThrow({ where: { email: d.createdBy.email } });
    expect(entries[0]).toMatchObject({
      action: "deployment.create",
      actorType: "USER",
      actorId: toGlobalId("User", user.id),
      targetType: "Deployment",
      crossTenant: false,
      metadata: { input },
    });
    expect(entries[0]!.requestId).toBeTruthy();
  });

  it("updateDeploymentStatus answers the row as changed (trigger times included) with one entry", async () => {
    const id = toGlobalId("Deployment", (await t.clients.platform.deployment.findFirstOrThrow({ where: { tenantId: acmeId } })).id);
    const input = { id, status: "READY", url: "https://w.acme.example.dev/" };
    const updated = await gql(UPDATE, { input });
    expect(updated.errors).toBeUndefined();
    const d = updated.data.updateDeploymentStatus.deployment;
    expect(d).toMatchObject({ id, status: "READY", url: input.url });
    expect((await gql(NODE, { id })).data.node).toEqual(d);
    expect(Date.parse(d.updatedAt)).toBeGreaterThanOrEqual(Date.parse(d.createdAt));
    const entry = await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { tenantId: acmeId, targetId: id }, orderBy: { createdAt: "desc" } });
    expect(entry).toMatchObject({ action: "deployment.updateStatus", metadata: { input } });
    // The url left out is kept.
    const again = await gql(UPDATE, { input: { id, status: "ERROR" } });
    expect(again.data.updateDeploymentStatus.deployment).toMatchObject({ status: "ERROR", url: input.url });
  });

  it("an unknown or another tenant's project: NOT_FOUND, no row, no entry", async () => {
    const globexDb = await tenantRows(t.clients, globexId);
    const foreign = (await globexDb.project.findFirstOrThrow({ where: { tenantId: globexId } })).id;
    const before = [await deploymentCount(), await globexDb.deployment.count(), await auditCount("deployment.create")];
    for (const id of [foreign, "00000000-0000-4000-8000-000000000001"]) {
      const res = await gql(CREATE, { input: { projectId: toGlobalId("Project", id), branch: "x" } });
      expect(res.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
      expect(res.data?.createDeployment ?? null).toBeNull();
    }
    expect([await deploymentCount(), await globexDb.deployment.count(), await auditCount("deployment.create")]).toEqual(before);
    const foreignDeployment = await globexDb.deployment.findFirstOrThrow({ where: { tenantId: globexId } });
    const updates = await auditCount("deployment.updateStatus");
    const res = await gql(UPDATE, { input: { id: toGlobalId("Deployment", foreignDeployment.id), status: "CANCELED" } });
    expect(res.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    expect((await globexDb.deployment.findFirstOrThrow({ where: { tenantId: globexId, id: foreignDeployment.id } })).status).toBe(foreignDeployment.status);
    expect(await auditCount("deployment.updateStatus")).toBe(updates);
  });

  it("one root field runs without a savepoint (ROLLBACK when it fails); two keep theirs (src/tenancy/mutation-changes.ts)", async () => {
    const counter = createSqlCounter({ app: Object.values(t.clients.appPools) });
    try {
      const verbs = (statements: RecordedStatement[]) => ofPool(statements, "app").map((s) => s.sql.split(" ")[0]);
      const input = { projectId: toGlobalId("Project", projectId), branch: "one-field" };
      const one = await counter.record(() => gql(`mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { deployment { id } } }`, { input }));
      expect(one.result.errors).toBeUndefined();
      // Open (BEGIN, settings, facts), the statement, COMMIT: three round trips.
      expect(verbs(one.statements)).toEqual(["BEGIN;", "WITH", "COMMIT"]);

      const before = [await deploymentCount(), await auditCount("deployment.create")];
      const unknown = { projectId: toGlobalId("Project", "00000000-0000-4000-8000-000000000000") };
      const failed = await counter.record(() => gql(CREATE, { input: unknown }));
      expect(failed.result.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
      expect(verbs(failed.statements)).toEqual(["BEGIN;", "WITH", "ROLLBACK"]);
      expect([await deploymentCount(), await auditCount("deployment.create")]).toEqual(before);

      const two = await counter.record(() =>
        gql(`mutation($a: CreateDeploymentInput!, $b: CreateDeploymentInput!) { a: createDeployment(input: $a) { deployment { id } } b: createDeployment(input: $b) { deployment { id } } }`, { a: input, b: input }),
      );
      expect(two.result.errors).toBeUndefined();
      expect(verbs(two.statements)).toEqual(["BEGIN;", "SAVEPOINT", "WITH", "RELEASE", "SAVEPOINT", "WITH", "RELEASE", "COMMIT"]);
    } finally {
      counter.detach();
    }
  });

  it("bad input is BAD_USER_INPUT naming the field, and writes nothing", async () => {
    const before = [await deploymentCount(), await auditCount("deployment.create")];
    const res = await gql(CREATE, { input: { projectId: toGlobalId("Project", projectId), branch: "b".repeat(256) } });
    expect(res.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "branch" });
    expect([await deploymentCount(), await auditCount("deployment.create")]).toEqual(before);
  });

  it("a row and its entry land together: a refused entry takes the row, a refused row the entry; the mutation's other changes stay", async () => {
    const owner = ownerClient(t.db.url);
    const id = toGlobalId("Deployment", (await t.clients.platform.deployment.findFirstOrThrow({ where: { tenantId: acmeId, status: { not: "CANCELED" } } })).id);
    await owner.$executeRawUnsafe(`ALTER TABLE deployments ADD CONSTRAINT test_refuse_row CHECK (branch IS DISTINCT FROM 'refused-row') NOT VALID`);
    await owner.$executeRawUnsafe(`ALTER TABLE audit_log ADD CONSTRAINT test_refuse_entry CHECK (metadata::text NOT LIKE '%refused-entry%') NOT VALID`);
    try {
      const before = [await deploymentCount(), await auditCount("deployment.create")];
      for (const branch of ["refused-row", "refused-entry"]) {
        const res = await gql(CREATE, { input: { projectId: toGlobalId("Project", projectId), branch } });
        expect(res.errors?.[0]?.extensions?.code, branch).toBe("INTERNAL_SERVER_ERROR");
        expect(JSON.stringify(res)).not.toMatch(/constraint|violates|postgres/i);
      }
      expect([await deploymentCount(), await auditCount("deployment.create")]).toEqual(before);
      expect(await t.clients.platform.deployment.count({ where: { branch: { in: ["refused-row", "refused-entry"] } } })).toBe(0);

      // The failed change is undone alone: the status change before it in the same mutation commits.
      const both = await gql(
        `mutation($u: UpdateDeploymentStatusInput!, $c: CreateDeploymentInput!) {
          u: updateDeploymentStatus(input: $u) { deployment { status } }
          c: createDeployment(input: $c) { deployment { id } }
        }`,
        { u: { id, status: "CANCELED" }, c: { projectId: toGlobalId("Project", projectId), branch: "refused-row" } },
      );
      // createDeployment's payload is non-null: the error reaches the root.
      expect(both.data ?? null).toBeNull();
      expect(both.errors?.[0]?.path).toEqual(["c"]);
      // The failed change was undone alone (its savepoint): the status change before it committed, with its entry.
      expect((await gql(NODE, { id })).data.node.status).toBe("CANCELED");
      expect(await t.clients.platform.auditLogEntry.count({ where: { targetId: id, action: "deployment.updateStatus", metadata: { path: ["input", "status"], equals: "CANCELED" } } })).toBe(1);
    } finally {
      await owner.$executeRawUnsafe(`ALTER TABLE deployments DROP CONSTRAINT test_refuse_row`);
      await owner.$executeRawUnsafe(`ALTER TABLE audit_log DROP CONSTRAINT test_refuse_entry`);
      await owner.$disconnect();
    }
  });
});

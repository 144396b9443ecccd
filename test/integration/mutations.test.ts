import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";
import type { PrismaClient } from "../../src/generated/prisma/client.ts";
import { tenantRows } from "../helpers/placements.ts";

/**
 * The tenant mutations of SPEC section 8: their payloads, their audit
 * entries (same transaction), input validation as BAD_USER_INPUT naming the
 * field (never a 500), and another tenant's ids behaving as missing ones.
 * Role enforcement is tested elsewhere: OWNER/ADMIN tokens are used here.
 */
describe("tenant mutations", () => {
  let t: TestApp;
  let dev: string;
  let admin: string;
  let acmeId: string;
  let globexId: string;
  /** globex's rows, where they live (its placement under TEST_PLACEMENTS=spread). */
  let globexDb: PrismaClient;

  beforeAll(async () => {
    t = await createTestApp();
    dev = await t.memberToken("acme", "OWNER");
    admin = await t.memberToken("acme", "ADMIN");
    acmeId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
    globexId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "globex" } })).id;
    globexDb = await tenantRows(t.clients, globexId);
  });
  afterAll(async () => {
    await t?.close();
  });

  async function ok(query: string, variables: Record<string, unknown>, token = dev) {
    const res = await t.gql(query, { variables, token });
    expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
    return res.body.data as any;
  }

  async function fails(query: string, variables: Record<string, unknown>, token = dev) {
    const res = await t.gql(query, { variables, token });
    expect(res.status).toBeLessThan(500);
    expect(res.body.errors, JSON.stringify(res.body)).toHaveLength(1);
    const err = res.body.errors![0];
    expect(JSON.stringify(err)).not.toMatch(/prisma|postgres|violates|constraint|stack/i);
    return err as { message: string; extensions: Record<string, unknown> };
  }

  const globex = async (model: "project" | "deployment" | "workflow") =>
    (await (globexDb[model] as any).findFirstOrThrow({ where: { tenantId: globexId } })).id as string;
  const acme = async (model: "project" | "deployment" | "workflow", where: object = {}) =>
    (await (t.clients.platform[model] as any).findFirstOrThrow({ where: { tenantId: acmeId, ...where } })).id as string;
  const auditCount = (action: string) => t.clients.platform.auditLogEntry.count({ where: { tenantId: acmeId, action } });

  const CREATE_PROJECT = `mutation($input: CreateProjectInput!) { createProject(input: $input) { project { id name slug } } }`;
  const UPDATE_PROJECT = `mutation($input: UpdateProjectInput!) { updateProject(input: $input) { project { id name } } }`;
  const DELETE_PROJECT = `mutation($input: DeleteProjectInput!) { deleteProject(input: $input) { deletedProjectId } }`;
  const UPDATE_STATUS = `mutation($input: UpdateDeploymentStatusInput!) { updateDeploymentStatus(input: $input) { deployment { id status url project { slug } } } }`;
  const CREATE_WORKFLOW = `mutation($input: CreateWorkflowInput!) { createWorkflow(input: $input) { workflow { id name status config project { id } } } }`;
  const UPDATE_WORKFLOW = `mutation($input: UpdateWorkflowInput!) { updateWorkflow(input: $input) { workflow { id name status config } } }`;
  const DELETE_WORKFLOW = `mutation($input: DeleteWorkflowInput!) { deleteWorkflow(input: $input) { deletedWorkflowId } }`;

  describe("projects", () => {
    it("validates names and slugs, naming the field", async () => {
      for (const [input, field] of [
        [{ name: "" }, "name"],
        [{ name: "   " }, "name"],
        [{ name: "x".repeat(101) }, "name"],
        [{ name: "Ok", slug: "A" }, "slug"],
        [{ name: "Ok", slug: "has space" }, "slug"],
        [{ name: "Ok", slug: "UPPER" }, "slug"],
        [{ name: "Ok", slug: "x".repeat(49) }, "slug"],
        [{ name: "Ok", slug: "ok'; DROP TABLE projects; --" }, "slug"],
        [{ name: "Ok", description: "d".repeat(2001) }, "description"],
      ] as const) {
        const err = await fails(CREATE_PROJECT, { input });
        expect(err.extensions, JSON.stringify(input)).toMatchObject({ code: "BAD_USER_INPUT", field });
      }
      const longest = await ok(CREATE_PROJECT, { input: { name: "n".repeat(100), slug: "s".repeat(48) } });
      expect(longest.createProject.project.slug).toBe("s".repeat(48));
    });

    it("searches projects as plain text: % and _ are not wildcards", async () => {
      const SEARCH = `query($s: String) { projects(filter: { search: $s }) { totalCount } }`;
      expect((await ok(SEARCH, { s: "%" })).projects.totalCount).toBe(0);
      expect((await ok(SEARCH, { s: "_" })).projects.totalCount).toBe(0);
      expect((await ok(SEARCH, { s: "\\" })).projects.totalCount).toBe(0);
      expect((await ok(SEARCH, { s: "acme corp web" })).projects.totalCount).toBe(1);
      const err = await fails(SEARCH, { s: "x".repeat(101) });
      expect(err.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "filter.search" });
    });

    it("a duplicate slug is BAD_USER_INPUT on slug, and nothing is written", async () => {
      const audits = await auditCount("project.create");
      const err = await fails(CREATE_PROJECT, { input: { name: "Web again", slug: "web" } });
      expect(err.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "slug" });
      expect(await auditCount("project.create")).toBe(audits);
      // Slugs are unique per tenant: globex's "web" does not block acme's new one, and vice versa.
      expect(await globexDb.project.count({ where: { tenantId: globexId, slug: "web" } })).toBe(1);
    });

    it("updates a project and writes the audit entry; another tenant's project is NOT_FOUND", async () => {
      const id = toGlobalId("Project", await acme("project", { slug: "docs" }));
      const before = await auditCount("project.update");
      const data = await ok(UPDATE_PROJECT, { input: { id, name: "Docs renamed" } });
      expect(data.updateProject.project).toEqual({ id, name: "Docs renamed" });
      expect(await auditCount("project.update")).toBe(before + 1);
      const err = await fails(UPDATE_PROJECT, { input: { id, name: "" } });
      expect(err.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "name" });

      const foreign = toGlobalId("Project", await globex("project"));
      expect((await fails(UPDATE_PROJECT, { input: { id: foreign, name: "hijack" } })).extensions.code).toBe("NOT_FOUND");
      expect((await fails(DELETE_PROJECT, { input: { id: foreign } }, admin)).extensions.code).toBe("NOT_FOUND");
      const missing = toGlobalId("Project", "00000000-0000-4000-8000-000000000000");
      expect((await fails(UPDATE_PROJECT, { input: { id: missing, name: "x" } })).extensions.code).toBe("NOT_FOUND");
      expect((await fails(UPDATE_PROJECT, { input: { id: "%%%", name: "x" } })).extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "id" });
      expect(await globexDb.project.count({ where: { tenantId: globexId, name: "hijack" } })).toBe(0);
    });

    it("deletes a project: its deployments go, its workflows stay detached, one audit entry", async () => {
      const created = await ok(CREATE_PROJECT, { input: { name: "Doomed" } });
      const gid = created.createProject.project.id;
      const project = await t.clients.platform.project.findFirstOrThrow({ where: { tenantId: acmeId, slug: "doomed" } });
      await t.clients.platform.deployment.createMany({
        data: [1, 2, 3].map(() => ({ tenantId: acmeId, projectId: project.id })),
      });
      const wf = await ok(CREATE_WORKFLOW, { input: { name: "Doomed CI", projectId: gid } });
      expect(wf.createWorkflow.workflow.project.id).toBe(gid);

      const data = await ok(DELETE_PROJECT, { input: { id: gid } }, admin);
      expect(data.deleteProject.deletedProjectId).toBe(gid);
      expect(await t.clients.platform.project.count({ where: { tenantId: acmeId, id: project.id } })).toBe(0);
      expect(await t.clients.platform.deployment.count({ where: { tenantId: acmeId, projectId: project.id } })).toBe(0);
      const workflow = await t.clients.platform.workflow.findFirstOrThrow({ where: { tenantId: acmeId, name: "Doomed CI" } });
      expect(workflow.projectId).toBeNull();
      const entry = await t.clients.platform.auditLogEntry.findFirstOrThrow({
        where: { tenantId: acmeId, action: "project.delete", targetId: gid },
      });
      expect(entry.metadata).toMatchObject({ slug: "doomed", detachedWorkflows: 1 });

      // Gone: a second delete is NOT_FOUND, node() is null.
      expect((await fails(DELETE_PROJECT, { input: { id: gid } }, admin)).extensions.code).toBe("NOT_FOUND");
      const node = await t.gql(`query($id: ID!) { node(id: $id) { id } }`, { token: dev, variables: { id: gid } });
      expect(node.body.data.node).toBeNull();
    });
  });

  describe("deployments", () => {
    it("updates the status and url, with an audit entry", async () => {
      const id = toGlobalId("Deployment", await acme("deployment", { status: "QUEUED" }));
      const data = await ok(UPDATE_STATUS, { input: { id, status: "READY", url: "https://build-7.acme.example.dev/" } });
      expect(data.updateDeploymentStatus.deployment).toMatchObject({ id, status: "READY", url: "https://build-7.acme.example.dev/" });
      expect(data.updateDeploymentStatus.deployment.project.slug).toMatch(/^[a-z]/);
      const entry = await t.clients.platform.auditLogEntry.findFirstOrThrow({
        where: { tenantId: acmeId, action: "deployment.updateStatus", targetId: id },
      });
      expect(entry.actorType).toBe("USER");
      // Status only: the url is kept.
      const again = await ok(UPDATE_STATUS, { input: { id, status: "ERROR" } });
      expect(again.updateDeploymentStatus.deployment).toMatchObject({ status: "ERROR", url: "https://build-7.acme.example.dev/" });
    });

    it("validates the url and the status", async () => {
      const id = toGlobalId("Deployment", await acme("deployment"));
      for (const url of ["ftp://example.com/x", "javascript:alert(1)", "not a url", "/relative", `https://e.com/${"a".repeat(2048)}`]) {
        const err = await fails(UPDATE_STATUS, { input: { id, status: "READY", url } });
        expect(err.extensions, url).toMatchObject({ code: "BAD_USER_INPUT", field: "url" });
      }
      const badEnum = await t.gql(UPDATE_STATUS, { token: dev, variables: { input: { id, status: "DONE" } } });
      expect(badEnum.body.errors?.[0]?.message).toMatch(/DeploymentStatus/);
      expect(badEnum.body.data ?? null).toBeNull();
      const literal = await t.gql(`mutation { updateDeploymentStatus(input: { id: "${id}", status: DONE }) { deployment { id } } }`, { token: dev });
      expect(literal.body.errors?.[0]?.message).toMatch(/DeploymentStatus/);
    });

    it("another tenant's deployment is NOT_FOUND and unchanged", async () => {
      const raw = await globex("deployment");
      const err = await fails(UPDATE_STATUS, { input: { id: toGlobalId("Deployment", raw), status: "CANCELED" } });
      expect(err.extensions.code).toBe("NOT_FOUND");
      const row = await globexDb.deployment.findFirstOrThrow({ where: { id: raw } });
      expect(row.status).not.toBe("CANCELED");
      // A project id where a deployment id is expected: NOT_FOUND too.
      const wrongType = await fails(UPDATE_STATUS, { input: { id: toGlobalId("Project", await acme("project")), status: "READY" } });
      expect(wrongType.extensions.code).toBe("NOT_FOUND");
    });
  });

  describe("workflows", () => {
    it("creates, updates and deletes a workflow, each with its audit entry", async () => {
      const projectId = toGlobalId("Project", await acme("project", { slug: "web" }));
      const createdBefore = await auditCount("workflow.create");
      const created = await ok(CREATE_WORKFLOW, {
        input: { name: "Nightly", projectId, config: { cron: "0 3 * * *", steps: ["build", "test"] } },
      });
      const wf = created.createWorkflow.workflow;
      expect(wf).toMatchObject({ name: "Nightly", status: "ACTIVE", config: { cron: "0 3 * * *" }, project: { id: projectId } });
      expect(await auditCount("workflow.create")).toBe(createdBefore + 1);

      const updated = await ok(UPDATE_WORKFLOW, { input: { id: wf.id, status: "PAUSED", name: "Nightly build", config: { cron: "0 4 * * *" } } });
      expect(updated.updateWorkflow.workflow).toEqual({ id: wf.id, name: "Nightly build", status: "PAUSED", config: { cron: "0 4 * * *" } });
      const cleared = await ok(UPDATE_WORKFLOW, { input: { id: wf.id, config: null } });
      expect(cleared.updateWorkflow.workflow).toMatchObject({ config: null, status: "PAUSED" });
      expect(
        await t.clients.platform.auditLogEntry.count({ where: { tenantId: acmeId, action: "workflow.update", targetId: wf.id } }),
      ).toBe(2);

      const listed = await ok(`{ workflows(filter: { status: PAUSED }) { totalCount edges { node { id } } } }`, {});
      expect(listed.workflows.edges.map((e: any) => e.node.id)).toEqual([wf.id]);

      const deleted = await ok(DELETE_WORKFLOW, { input: { id: wf.id } }, admin);
      expect(deleted.deleteWorkflow.deletedWorkflowId).toBe(wf.id);
      expect(await t.clients.platform.auditLogEntry.count({ where: { action: "workflow.delete", targetId: wf.id } })).toBe(1);
      expect((await fails(DELETE_WORKFLOW, { input: { id: wf.id } }, admin)).extensions.code).toBe("NOT_FOUND");
    });

    it("validates name and config, and writes nothing on a bad input", async () => {
      const before = await t.clients.platform.workflow.count({ where: { tenantId: acmeId } });
      const big = { blob: "x".repeat(64 * 1024) };
      for (const [input, field] of [
        [{ name: "" }, "name"],
        [{ name: "w".repeat(101) }, "name"],
        [{ name: "ok", config: [1, 2, 3] }, "config"],
        [{ name: "ok", config: "a string" }, "config"],
        [{ name: "ok", config: 42 }, "config"],
        [{ name: "ok", config: big }, "config"],
        [{ name: "ok", projectId: "not-an-id" }, "projectId"],
      ] as const) {
        const err = await fails(CREATE_WORKFLOW, { input });
        expect(err.extensions, JSON.stringify(input).slice(0, 80)).toMatchObject({ code: "BAD_USER_INPUT", field });
      }
      expect(await t.clients.platform.workflow.count({ where: { tenantId: acmeId } })).toBe(before);
      const id = toGlobalId("Workflow", await acme("workflow"));
      const err = await fails(UPDATE_WORKFLOW, { input: { id, config: big } });
      expect(err.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "config" });
      const badStatus = await t.gql(UPDATE_WORKFLOW, { token: dev, variables: { input: { id, status: "RUNNING" } } });
      expect(badStatus.body.errors?.[0]?.message).toMatch(/WorkflowStatus/);
    });

    it("another tenant's workflow or project is NOT_FOUND", async () => {
      const foreignWorkflow = toGlobalId("Workflow", await globex("workflow"));
      const foreignProject = toGlobalId("Project", await globex("project"));
      expect((await fails(UPDATE_WORKFLOW, { input: { id: foreignWorkflow, name: "x" } })).extensions.code).toBe("NOT_FOUND");
      expect((await fails(DELETE_WORKFLOW, { input: { id: foreignWorkflow } }, admin)).extensions.code).toBe("NOT_FOUND");
      expect((await fails(CREATE_WORKFLOW, { input: { name: "x", projectId: foreignProject } })).extensions.code).toBe("NOT_FOUND");
      expect(await globexDb.workflow.count({ where: { tenantId: globexId, name: "x" } })).toBe(0);
      expect(await t.clients.platform.workflow.count({ where: { tenantId: acmeId, name: "x" } })).toBe(0);
    });
  });

  describe("auditLog", () => {
    const AUDIT = `query($first: Int, $after: String, $filter: AuditLogFilter) {
      auditLog(first: $first, after: $after, filter: $filter) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges { node { id action actorType actorId actorLabel targetType targetId crossTenant metadata requestId createdAt tenant { slug } } }
      }
    }`;

    it("lists the tenant's own entries, newest first, filtered by action, actor and time", async () => {
      // Entries of its own, in both tenants, whichever tests ran before (or none).
      for (const name of ["Audit filler 1", "Audit filler 2", "Audit filler 3"]) await ok(CREATE_PROJECT, { input: { name } });
      await ok(CREATE_PROJECT, { input: { name: "Globex audited" } }, await t.memberToken("globex", "OWNER"));
      const start = new Date(Date.now() - 1000);
      const requestId = `audit-test-${Date.now()}`;
      const res = await t.gql(CREATE_PROJECT, { token: dev, variables: { input: { name: "Audited" } }, headers: { "x-request-id": requestId } });
      expect(res.body.errors).toBeUndefined();
      const data = await ok(AUDIT, { first: 100, filter: { action: "project.create", since: start.toISOString() } }, admin);
      // Earlier tests in this file may have created projects within the same second.
      const mine = data.auditLog.edges.filter((e: any) => e.node.requestId === requestId);
      expect(mine).toHaveLength(1);
      const entry = mine[0].node;
      expect(entry).toMatchObject({
        action: "project.create",
        actorType: "USER",
        actorLabel: "owner@acme.test",
        targetType: "Project",
        targetId: res.body.data.createProject.project.id,
        crossTenant: false,
        requestId,
        tenant: { slug: "acme" },
      });
      expect(data.auditLog.totalCount).toBe(data.auditLog.edges.length);
      for (const e of data.auditLog.edges) {
        expect(e.node.action).toBe("project.create");
        expect(Date.parse(e.node.createdAt)).toBeGreaterThanOrEqual(start.getTime());
      }
      const older = await ok(AUDIT, { first: 100, filter: { action: "project.create" } }, admin);
      expect(older.auditLog.totalCount).toBeGreaterThanOrEqual(data.auditLog.totalCount);

      const byActor = await ok(AUDIT, { first: 100, filter: { actorId: entry.actorId } }, admin);
      expect(byActor.auditLog.edges.length).toBeGreaterThan(0);
      for (const e of byActor.auditLog.edges) expect(e.node.actorId).toBe(entry.actorId);
      const nobody = await ok(AUDIT, { filter: { actorId: toGlobalId("User", "00000000-0000-4000-8000-000000000000") } }, admin);
      expect(nobody.auditLog.totalCount).toBe(0);

      // Newest first, and pages chain without repeats.
      const all = await ok(AUDIT, { first: 100 }, admin);
      expect(all.auditLog.edges.length).toBeGreaterThanOrEqual(4);
      const times = all.auditLog.edges.map((e: any) => Date.parse(e.node.createdAt));
      expect(times).toEqual([...times].sort((a, b) => b - a));
      const p1 = await ok(AUDIT, { first: 2 }, admin);
      const p2 = await ok(AUDIT, { first: 2, after: p1.auditLog.pageInfo.endCursor }, admin);
      expect(p2.auditLog.edges.map((e: any) => e.node.id)).toEqual(all.auditLog.edges.slice(2, 4).map((e: any) => e.node.id));

      // Only acme's entries: globex's never appear.
      const globexEntries = await globexDb.auditLogEntry.findMany({ where: { tenantId: globexId }, select: { id: true } });
      expect(globexEntries.length).toBeGreaterThan(0);
      const ids = new Set(all.auditLog.edges.map((e: any) => e.node.id));
      for (const g of globexEntries) expect(ids.has(toGlobalId("AuditLogEntry", g.id))).toBe(false);
      expect(all.auditLog.edges.every((e: any) => e.node.tenant.slug === "acme")).toBe(true);
    });

    it("shows entries to ADMINs only: below ADMIN, node(id) of an entry is null", async () => {
      const raw = await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { tenantId: acmeId } });
      const id = toGlobalId("AuditLogEntry", raw.id);
      const NODE = `query($id: ID!) { node(id: $id) { id ... on AuditLogEntry { action } } }`;
      const asAdmin = await t.gql(NODE, { token: admin, variables: { id } });
      expect(asAdmin.body.data.node).toEqual({ id, action: raw.action });
      for (const role of ["VIEWER", "DEVELOPER"] as const) {
        const res = await t.gql(NODE, { token: await t.memberToken("acme", role), variables: { id } });
        expect(res.body.data?.node ?? null, role).toBeNull();
      }
    });

    it("rejects oversized filters", async () => {
      const err = await fails(AUDIT, { filter: { action: "a".repeat(101) } }, admin);
      expect(err.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "filter.action" });
    });
  });
});

import { execFileSync } from "node:child_process";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import { seedDemo, demoEmail } from "../../src/db/seed.ts";
import type { Databases } from "../../src/db/clients.ts";
import type { LiveChange, LiveUpdates } from "../../src/infra/live-events.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { createTestClients, createTestDatabase, databaseUrl, testServerUrl, type TestDatabase } from "../helpers/db.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { TEST_JWT_SECRET, testAppDeps } from "../helpers/app.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";

/**
 * Issue 12 point 9: a committed mutation is never answered as a failure
 * because of a read after its COMMIT. The payload (with relations) is
 * resolved inside the mutation's transaction, so PostgreSQL becoming
 * unreachable right after the COMMIT (every backend of the database
 * terminated, new connections refused: a real fault, injected at the
 * moment the commit is announced to the live-updates hub) changes nothing
 * in the answer.
 */

const psql = (url: string, ...sql: string[]) => execFileSync("psql", [url, "-v", "ON_ERROR_STOP=1", "-q", ...sql.flatMap((s) => ["-c", s])], { stdio: "pipe" });

describe("a mutation's answer needs no database after its COMMIT", () => {
  let db: TestDatabase;
  let clients: Databases;
  let app: App;
  let adminUrl: string;
  const published: LiveChange[][] = [];
  let armed = false;
  let faulted = false;

  /** The live-updates hub, told of each change after its COMMIT: cuts the database off, synchronously, the first time it is armed. */
  const hub: LiveUpdates = {
    publish(_tenantId, changes) {
      published.push(changes);
      if (!armed) return;
      armed = false;
      const name = db.name.replace(/'/g, "''");
      psql(
        adminUrl,
        `ALTER DATABASE "${db.name}" ALLOW_CONNECTIONS false`,
        `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '${name}' AND pid <> pg_backend_pid()`,
      );
      faulted = true;
    },
    count: async () => 0,
  };

  const reopen = () => psql(adminUrl, `ALTER DATABASE "${db.name}" ALLOW_CONNECTIONS true`);

  beforeAll(async () => {
    db = await createTestDatabase();
    adminUrl = databaseUrl(testServerUrl(), "postgres");
    clients = createTestClients(db.url);
    await seedDemo(clients.platform);
    app = createApp(testAppDeps(clients, isolatedStore(), { live: hub }));
  });
  afterAll(async () => {
    reopen();
    await clients?.close();
    await db?.drop();
  });

  const post = async (query: string, variables: Record<string, unknown>) => {
    const token = await signDevToken({ secret: TEST_JWT_SECRET, sub: demoEmail("DEVELOPER", "acme"), tenant: "acme", ttl: "1h" });
    const res = await app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
    });
    return { status: res.status, body: (await res.json()) as { data?: any; errors?: any[] } };
  };

  it("createDeployment with project, creator and the project's deployments selected: answered in full though the database went away after the COMMIT", async () => {
    const acme = await clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    const project = await clients.platform.project.findFirstOrThrow({ where: { tenantId: acme.id }, orderBy: { createdAt: "asc" } });
    const branch = `after-commit-${Date.now()}`;
    armed = true;
    const res = await post(
      `mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { deployment {
         id branch status project { id name deploymentCount latestDeployment { id branch } } createdBy { email } } } }`,
      { input: { projectId: toGlobalId("Project", project.id), branch, commitSha: "abc123" } },
    );
    // The fault really happened, after the COMMIT (the hub hears only of committed changes).
    expect(faulted).toBe(true);
    expect(res.body.errors).toBeUndefined();
    expect(res.status).toBe(200);
    const d = res.body.data.createDeployment.deployment;
    expect(d).toMatchObject({ branch, project: { id: toGlobalId("Project", project.id), name: project.name }, createdBy: { email: demoEmail("DEVELOPER", "acme") } });
    // Read in the mutation's own transaction: the new deployment is the project's latest and is counted.
    expect(d.project.latestDeployment).toEqual({ id: d.id, branch });
    expect(d.project.deploymentCount).toBeGreaterThan(0);

    // The database is unreachable indeed: a new request is refused with a coded 503.
    const during = await post(`mutation($input: CreateProjectInput!) { createProject(input: $input) { project { id } } }`, { input: { name: `refused-${Date.now()}` } });
    expect(during.status).toBe(503);
    expect(during.body.errors?.[0]?.extensions?.code).toBe("SERVICE_UNAVAILABLE");

    reopen();
    const check = new pg.Client({ connectionString: db.url });
    await check.connect();
    try {
      const { rows } = await check.query(`SELECT count(*)::int AS n FROM deployments WHERE branch = $1`, [branch]);
      expect(rows[0].n).toBe(1);
      const audit = await check.query(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'deployment.create' AND target_id = $1`, [d.id]);
      expect(audit.rows[0].n).toBe(1);
    } finally {
      await check.end();
    }
  });

  it("a change and its payload read are one transaction: the payload sees the change, and the live event goes out only after the COMMIT", async () => {
    const before = published.length;
    const res = await post(`mutation($input: CreateProjectInput!) { createProject(input: $input) { project { id name deploymentCount deployments(first: 5) { totalCount } } } }`, {
      input: { name: `one-tx-${Date.now()}` },
    });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.createProject.project).toMatchObject({ deploymentCount: 0, deployments: { totalCount: 0 } });
    // createProject publishes its audit entry once, after the COMMIT.
    expect(published.length).toBe(before + 1);
    expect(published[before]!.map((c) => c.type)).toEqual(["AuditLogEntry"]);
  });
});

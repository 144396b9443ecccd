import { randomBytes, randomUUID } from "node:crypto";
import { appendFileSync } from "node:fs";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { inject } from "vitest";
import { APP_ROLE, createDatabases, PLATFORM_ROLE, type Databases } from "../../src/db/clients.ts";
import { runMigrations, type MigrationResult } from "../../src/db/migrate.ts";
import { PrismaClient } from "../../src/generated/prisma/client.ts";

/**
 * Test databases.
 *
 * The global setup (test/helpers/global-setup.ts) picks the server
 * (DATABASE_URL, else an embedded PostgreSQL) and migrates one template
 * database into it. Each test file then calls `createTestDatabase()`, which
 * clones the template (CREATE DATABASE ... TEMPLATE: fast, and no migration
 * runs concurrently, so the cluster-global roles are never created twice at
 * once) and drops it in `afterAll`.
 */

declare module "vitest" {
  export interface ProvidedContext {
    testDbServerUrl: string;
    testDbTemplate: string;
    /** The file listing the run's retired test databases, dropped by the global teardown (test/helpers/drop-list.ts). */
    testDbDropList: string;
  }
}

export interface TestDatabase {
  /** Owner (superuser) URL of the new database: RLS does not apply to it. */
  url: string;
  name: string;
  /** Done with it: no connection is left or accepted, and the run's teardown drops it. */
  drop(): Promise<void>;
}

/** Replaces the database name of a PostgreSQL URL. */
export function databaseUrl(serverUrl: string, database: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

/** The server of this test run (as set up by the global setup). */
export function testServerUrl(): string {
  const url = inject("testDbServerUrl");
  if (!url) throw new Error("no test database server: run the tests through vitest.config.ts (globalSetup)");
  return url;
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;
const uniqueName = (prefix: string) => `${prefix}_${randomBytes(6).toString("hex")}`;

async function withAdmin<T>(serverUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await withAdmin(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${quote(name)} WITH (FORCE)`));
}

// Any constant: every test process takes this lock in the server's maintenance
// database (advisory locks are per database) around migrations, because the
// migration creates cluster-global roles and two concurrent CREATE ROLEs race.
const MIGRATION_LOCK = 0x7e57_0001;
const isRoleRace = (err: unknown) =>
  /pg_authid_rolname_index|role "[^"]+" already exists|tuple concurrently updated/.test(String((err as Error)?.message));

/**
 * runMigrations, serialized across test processes (and retried if a process
 * outside this helper created the roles at the same moment).
 */
export async function migrateTestDatabase(
  serverUrl: string,
  url: string,
  options: { dir?: string } = {},
): Promise<MigrationResult> {
  return withAdmin(serverUrl, async (admin) => {
    await admin.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          return await runMigrations(url, options);
        } catch (err) {
          if (attempt >= 5 || !isRoleRace(err)) throw err;
          await new Promise((r) => setTimeout(r, 50 * attempt));
        }
      }
    } finally {
      await admin.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
    }
  });
}

/** Global setup: a migrated database that test databases are cloned from. */
export async function createTemplateDatabase(serverUrl: string): Promise<string> {
  const name = uniqueName("tg_template");
  await withAdmin(serverUrl, (c) => c.query(`CREATE DATABASE ${quote(name)}`));
  try {
    await migrateTestDatabase(serverUrl, databaseUrl(serverUrl, name));
    // Nobody may connect to it any more: a connection would make cloning fail.
    await withAdmin(serverUrl, (c) => c.query(`ALTER DATABASE ${quote(name)} WITH ALLOW_CONNECTIONS false`));
  } catch (err) {
    await dropDatabase(serverUrl, name).catch(() => {});
    throw err;
  }
  return name;
}

/**
 * A test file's database when the file is done with it: listed for the
 * global teardown to drop, closed to new connections, and its remaining
 * connections ended. Not dropped here: PostgreSQL 15 makes every DROP
 * DATABASE wait for a checkpoint of the whole server (a fraction of a second
 * to several seconds while other files write), and the file's worker waited
 * for it before its next file; the teardown drops them all together, where
 * concurrent drops share their checkpoints. Without a drop list (the
 * database helpers used outside vitest.config.ts's global setup): dropped at once.
 */
async function retireDatabase(serverUrl: string, name: string): Promise<void> {
  const list = inject("testDbDropList");
  if (!list) return dropDatabase(serverUrl, name);
  appendFileSync(list, `${name}\n`);
  await withAdmin(serverUrl, async (c) => {
    try {
      await c.query(`ALTER DATABASE ${quote(name)} WITH ALLOW_CONNECTIONS false`);
    } catch (err) {
      if ((err as { code?: string }).code === "3D000") return; // dropped already
      throw err;
    }
    await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name]);
  });
}

function handle(serverUrl: string, name: string): TestDatabase {
  return { name, url: databaseUrl(serverUrl, name), drop: () => retireDatabase(serverUrl, name) };
}

/**
 * Every connection to a test database runs with PostgreSQL's JIT off. The
 * tests' tables are small and never analyzed, so the planner's default
 * estimates put a statement with many subqueries (tenant-stats' drift check,
 * the isolation model's digests) past jit_above_cost, and the server then
 * spends seconds compiling it (3.6 s of LLVM for a drift check that runs in
 * 10 ms). JIT changes how a plan runs, never what it returns; nothing here
 * measures speed (`npm run bench` does, on its own databases).
 */
const NO_JIT = (name: string) => `ALTER DATABASE ${quote(name)} SET jit = off`;

/** A fresh, migrated database of its own (a clone of the template). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = testServerUrl();
  const template = inject("testDbTemplate");
  const name = uniqueName("tg_test");
  await withAdmin(serverUrl, async (c) => {
    for (let attempt = 1; ; attempt++) {
      try {
        await c.query(`CREATE DATABASE ${quote(name)} TEMPLATE ${quote(template)}`);
        await c.query(NO_JIT(name));
        return;
      } catch (err) {
        // "source database is being accessed by other users": a concurrent clone.
        if (attempt >= 10 || !/being accessed by other users/.test(String((err as Error).message))) throw err;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  });
  return handle(serverUrl, name);
}

/** A fresh database without any migration applied (for migration tests). */
export async function createEmptyDatabase(): Promise<TestDatabase> {
  const serverUrl = testServerUrl();
  const name = uniqueName("tg_test");
  await withAdmin(serverUrl, async (c) => {
    await c.query(`CREATE DATABASE ${quote(name)}`);
    await c.query(NO_JIT(name));
  });
  return handle(serverUrl, name);
}

/**
 * The server's clients: the tier clients and `live` (tenantgraph_app) and
 * `platform` (tenantgraph_platform); `poolSize` connections per plan.
 */
export function createTestClients(url: string, poolSize = 5): Databases {
  return createDatabases({ ...testDatabaseUrls(url), pools: { FREE: poolSize, PRO: poolSize, ENTERPRISE: poolSize, platform: Math.max(2, Math.ceil(poolSize / 2)), live: 2 } });
}

/** The login users of PgBouncer mode: members of the server roles, switched to them at login (docs/database.md, managed databases). */
const PGBOUNCER_LOGINS = { app: "tg_pgb_app", platform: "tg_pgb_platform" } as const;

/**
 * The server's connections to the test database `url`. Normally the
 * migrator's URL alone (the pools switch role at connection start). With
 * TEST_PGBOUNCER_URL (`npm run test:pgbouncer`, a PgBouncer in transaction
 * mode in front of the same server), the app and platform pools go through
 * PgBouncer as login users, as a deployment behind PgBouncer does
 * (docs/scale-out.md); the migrator's URL stays direct.
 */
export function testDatabaseUrls(url: string): { ownerUrl: string; appUrl?: string; platformUrl?: string; preparedStatements?: boolean } {
  const bouncer = process.env.TEST_PGBOUNCER_URL;
  if (!bouncer) return { ownerUrl: url };
  const via = (user: string) => {
    const u = new URL(databaseUrl(bouncer, new URL(url).pathname.slice(1)));
    u.username = user;
    u.password = "";
    return u.toString();
  };
  // PgBouncer 1.18 (Debian's) hands a client's next transaction to any server connection: no named statements.
  return { ownerUrl: url, appUrl: via(PGBOUNCER_LOGINS.app), platformUrl: via(PGBOUNCER_LOGINS.platform), preparedStatements: false };
}

/** PgBouncer mode: creates the login users (cluster-global, once per server) after the template's migration made the roles. */
export async function ensurePgBouncerLogins(serverUrl: string): Promise<void> {
  if (!process.env.TEST_PGBOUNCER_URL) return;
  await withAdmin(serverUrl, async (c) => {
    await c.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    try {
      for (const [kind, login] of Object.entries(PGBOUNCER_LOGINS)) {
        const role = kind === "app" ? APP_ROLE : PLATFORM_ROLE;
        await c.query(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${login}') THEN CREATE ROLE ${login} LOGIN NOSUPERUSER NOBYPASSRLS; END IF; END $$`);
        await c.query(`GRANT ${role} TO ${login}`);
        await c.query(`ALTER ROLE ${login} SET role = '${role}'`);
      }
    } finally {
      await c.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
    }
  });
}

/** A plain Prisma client over the owner (superuser) URL: RLS does not apply. */
export function ownerClient(url: string): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
}

export interface SeededTenant {
  tenantId: string;
  slug: string;
  userId: string;
  membershipId: string;
  projectIds: [string, string];
  /** Three per project. */
  deploymentIds: Record<string, string[]>;
  allDeploymentIds: string[];
  workflowId: string;
  auditEntryId: string;
  apiKeyId: string;
}

/**
 * Two tenants, A and B, each with one user (OWNER member), 2 projects with 3
 * deployments each, 1 workflow, 1 audit entry and 1 API key. Pass the
 * platform client (tenantgraph_platform has explicit all-access policies) or
 * an owner client.
 */
export async function seedTwoTenants(db: PrismaClient): Promise<{ A: SeededTenant; B: SeededTenant }> {
  const seed = async (label: string): Promise<SeededTenant> => {
    const suffix = randomBytes(4).toString("hex");
    const tenantId = randomUUID();
    const userId = randomUUID();
    const membershipId = randomUUID();
    const projectIds: [string, string] = [randomUUID(), randomUUID()];
    const deploymentIds: Record<string, string[]> = {};
    const workflowId = randomUUID();
    const auditEntryId = randomUUID();
    const apiKeyId = randomUUID();
    const slug = `tenant-${label.toLowerCase()}-${suffix}`;
    await db.tenant.create({ data: { id: tenantId, slug, name: `Tenant ${label}` } });
    await db.user.create({
      data: { id: userId, email: `owner-${label.toLowerCase()}-${suffix}@example.test`, authSubject: `sub|${label}|${suffix}`, name: `Owner ${label}` },
    });
    await db.membership.create({ data: { tenantId, id: membershipId, userId, role: "OWNER" } });
    for (const [i, projectId] of projectIds.entries()) {
      await db.project.create({ data: { tenantId, id: projectId, name: `${label} project ${i}`, slug: `${label.toLowerCase()}-p${i}` } });
      deploymentIds[projectId] = [randomUUID(), randomUUID(), randomUUID()];
      await db.deployment.createMany({
        data: deploymentIds[projectId]!.map((id, j) => ({
          tenantId,
          id,
          projectId,
          status: j === 0 ? ("READY" as const) : ("QUEUED" as const),
          branch: `${label}-branch-${j}`,
          createdById: userId,
        })),
      });
    }
    await db.workflow.create({ data: { tenantId, id: workflowId, projectId: projectIds[0], name: `${label} workflow` } });
    await db.auditLogEntry.create({
      data: { tenantId, id: auditEntryId, action: "project.create", actorType: "USER", actorId: userId },
    });
    await db.apiKey.create({
      data: { tenantId, id: apiKeyId, name: `${label} key`, role: "VIEWER", prefix: `tg_${suffix}`, secretHash: `hash-${label}-${suffix}` },
    });
    return {
      tenantId,
      slug,
      userId,
      membershipId,
      projectIds,
      deploymentIds,
      allDeploymentIds: projectIds.flatMap((p) => deploymentIds[p]!),
      workflowId,
      auditEntryId,
      apiKeyId,
    };
  };
  const A = await seed("A");
  const B = await seed("B");
  return { A, B };
}

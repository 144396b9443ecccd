/**
 * Wall 2 alone: row-level security. An UNSCOPED Prisma client (no tenant
 * extension) connected as tenantgraph_app, each query inside a transaction
 * that sets app.tenant_id to A. Everything tenant B owns must stay invisible
 * and untouched.
 */
import { randomUUID } from "node:crypto";
import { PrismaPg } from "@prisma/adapter-pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { APP_ROLE, createPool, type Databases } from "../../src/db/clients.ts";
import { PrismaClient, type Prisma } from "../../src/generated/prisma/client.ts";
import { createTestClients, createTestDatabase, seedTwoTenants, type SeededTenant, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;
let dbs: Databases;
let A: SeededTenant;
let B: SeededTenant;
let shared: { userId: string; membershipA: string; membershipB: string };
let tenantTables: string[];

const sorted = (xs: string[]) => [...xs].sort();
const ids = (rows: Array<{ id: string }>) => sorted(rows.map((r) => r.id));
const RLS_VIOLATION = /row-level security/i;

/**
 * One transaction as tenantgraph_app with app.tenant_id = tenantId (no Prisma
 * extension), and app.user_id / app.api_key_id when given.
 */
function asTenant<T>(
  tenantId: string,
  fn: (tx: Prisma.TransactionClient) => Promise<T>,
  actor: { userId?: string; apiKeyId?: string } = {},
): Promise<T> {
  return dbs.app.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT set_config('app.tenant_id', ${tenantId}, true),
      set_config('app.user_id', ${actor.userId ?? ""}, true), set_config('app.api_key_id', ${actor.apiKeyId ?? ""}, true)`;
    return fn(tx);
  });
}
const asA = <T>(fn: (tx: Prisma.TransactionClient) => Promise<T>) => asTenant(A.tenantId, fn);

/** Everything tenant B owns, read through the platform role. */
async function snapshotB() {
  const p = dbs.platform;
  const t = B.tenantId;
  return {
    tenant: await p.tenant.findUnique({ where: { id: t } }),
    user: await p.user.findUnique({ where: { id: B.userId } }),
    memberships: await p.membership.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
    projects: await p.project.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
    deployments: await p.deployment.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
    workflows: await p.workflow.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
    apiKeys: await p.apiKey.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
    auditLog: await p.auditLogEntry.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
  };
}
let bBefore: Awaited<ReturnType<typeof snapshotB>>;

beforeAll(async () => {
  db = await createTestDatabase();
  dbs = createTestClients(db.url);
  const rows = await dbs.platform.$queryRaw<Array<{ table: string }>>`
    SELECT c.relname AS table FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attname = 'tenant_id' ORDER BY 1`;
  tenantTables = rows.map((r) => r.table);
});

// Every test gets two tenants of its own (and the shared user), and leaves
// nothing behind: no test sees what another one wrote, in any order.
beforeEach(async () => {
  ({ A, B } = await seedTwoTenants(dbs.platform));
  const userId = randomUUID();
  await dbs.platform.user.create({ data: { id: userId, email: `shared-${userId}@example.test`, authSubject: `sub|shared|${userId}` } });
  const membershipA = randomUUID();
  const membershipB = randomUUID();
  await dbs.platform.membership.createMany({
    data: [
      { tenantId: A.tenantId, id: membershipA, userId, role: "VIEWER" },
      { tenantId: B.tenantId, id: membershipB, userId, role: "VIEWER" },
    ],
  });
  await dbs.platform.deployment.updateMany({
    where: { id: { in: [A.allDeploymentIds[0]!, B.allDeploymentIds[0]!] } },
    data: { createdById: userId },
  });
  shared = { userId, membershipA, membershipB };
  bBefore = await snapshotB();
});
afterEach(async () => {
  await dbs.platform.tenant.deleteMany({});
  await dbs.platform.user.deleteMany({});
});

afterAll(async () => {
  await dbs?.close();
  await db?.drop();
});

describe("the setting: wall 1 is off", () => {
  it("the app client runs as tenantgraph_app, unscoped; the platform role sees both tenants", async () => {
    const [who] = await asA((tx) => tx.$queryRaw<Array<{ role: string; su: string }>>`SELECT current_user AS role, current_setting('is_superuser') AS su`);
    expect(who).toEqual({ role: APP_ROLE, su: "off" });
    expect(await dbs.platform.project.count()).toBe(4);
    expect(bBefore.deployments).toHaveLength(6);
    expect(tenantTables.length).toBeGreaterThanOrEqual(8);
  });
});

describe("without app.tenant_id the app role sees nothing", () => {
  it("zero rows in every tenant table, and no users", async () => {
    const counts: Record<string, number> = {};
    for (const table of [...tenantTables, "users"]) {
      const [row] = await dbs.app.$queryRawUnsafe<Array<{ n: number }>>(`SELECT count(*)::int AS n FROM "${table}"`);
      counts[table] = row!.n;
    }
    expect(counts).toEqual(Object.fromEntries([...tenantTables, "users"].map((t) => [t, 0])));
    // control: the rows are there
    expect(await dbs.platform.membership.count()).toBeGreaterThan(0);
    expect(await dbs.app.project.findMany()).toEqual([]);
    expect(await dbs.app.deployment.count()).toBe(0);
  });

  it("a tenant id that owns nothing sees nothing either", async () => {
    expect(await asTenant(randomUUID(), (tx) => tx.project.count())).toBe(0);
  });

  it("the setting does not leak to the next transaction on the same pooled connection", async () => {
    const pool = createPool(db.url, APP_ROLE, 1);
    const client = new PrismaClient({ adapter: new PrismaPg(pool) });
    try {
      const first = await client.$transaction(async (tx) => {
        await tx.$executeRaw`SELECT set_config('app.tenant_id', ${A.tenantId}, true)`;
        const [row] = await tx.$queryRaw<Array<{ pid: number }>>`SELECT pg_backend_pid() AS pid`;
        return { pid: row!.pid, projects: await tx.project.count() };
      });
      expect(first.projects).toBe(2);
      const second = await client.$transaction(async (tx) => {
        const [row] = await tx.$queryRaw<Array<{ pid: number; setting: string | null }>>`
          SELECT pg_backend_pid() AS pid, current_setting('app.tenant_id', true) AS setting`;
        return { pid: row!.pid, setting: row!.setting, projects: await tx.project.count() };
      });
      expect(second.pid).toBe(first.pid); // really the same connection
      expect(second.setting ?? "").toBe("");
      expect(second.projects).toBe(0);
      // nor outside a transaction
      expect(await client.project.count()).toBe(0);
    } finally {
      await client.$disconnect();
      await pool.end().catch(() => {});
    }
  });
});

describe("reads as tenant A", () => {
  it("findMany returns exactly A's rows of every tenant model, and A's members", async () => {
    const got = await asA(async (tx) => ({
      projects: ids(await tx.project.findMany()),
      deployments: ids(await tx.deployment.findMany()),
      workflows: ids(await tx.workflow.findMany()),
      apiKeys: ids(await tx.apiKey.findMany()),
      auditLog: ids(await tx.auditLogEntry.findMany()),
      memberships: ids(await tx.membership.findMany()),
      users: ids(await tx.user.findMany()),
    }));
    expect(got).toEqual({
      projects: sorted(A.projectIds),
      deployments: sorted(A.allDeploymentIds),
      workflows: [A.workflowId],
      apiKeys: [A.apiKeyId],
      auditLog: [A.auditEntryId],
      memberships: sorted([A.membershipId, shared.membershipA]),
      users: sorted([A.userId, shared.userId]),
    });
  });

  it("B's ids and B's tenant id find nothing", async () => {
    await asA(async (tx) => {
      expect(await tx.project.findMany({ where: { tenantId: B.tenantId } })).toEqual([]);
      expect(await tx.project.findFirst({ where: { id: B.projectIds[0] } })).toBeNull();
      expect(await tx.project.findUnique({ where: { tenantId_id: { tenantId: B.tenantId, id: B.projectIds[0]! } } })).toBeNull();
      expect(await tx.project.findUnique({ where: { tenantId_slug: { tenantId: B.tenantId, slug: "b-p0" } } })).toBeNull();
      expect(await tx.apiKey.findUnique({ where: { secretHash: bBefore.apiKeys[0]!.secretHash } })).toBeNull();
      expect(await tx.user.findUnique({ where: { id: B.userId } })).toBeNull();
      // control: A's own row by key
      expect((await tx.project.findUnique({ where: { tenantId_id: { tenantId: A.tenantId, id: A.projectIds[0]! } } }))?.id).toBe(A.projectIds[0]);
    });
  });

  it("count, aggregate and groupBy cover A only", async () => {
    await asA(async (tx) => {
      expect(await tx.project.count()).toBe(2);
      expect(await tx.deployment.count({ where: { tenantId: B.tenantId } })).toBe(0);
      const agg = await tx.deployment.aggregate({ _count: { _all: true }, _max: { branch: true } });
      expect(agg).toEqual({ _count: { _all: 6 }, _max: { branch: "A-branch-2" } });
      expect(await tx.deployment.groupBy({ by: ["tenantId"], _count: { _all: true } })).toEqual([
        { tenantId: A.tenantId, _count: { _all: 6 } },
      ]);
    });
  });

  it("relation traversals (include), relation filters and _count see only A", async () => {
    await asA(async (tx) => {
      const projects = await tx.project.findMany({ include: { deployments: true, workflows: true } });
      expect(projects).toHaveLength(2);
      for (const p of projects) expect(ids(p.deployments)).toEqual(sorted(A.deploymentIds[p.id]!));
      const user = await tx.user.findUnique({ where: { id: shared.userId }, include: { memberships: true, deployments: true } });
      expect(ids(user!.memberships)).toEqual([shared.membershipA]);
      expect(ids(user!.deployments)).toEqual([A.allDeploymentIds[0]!]);
      // tenants are not tenant-owned rows (slug resolution reads them), but nothing of B's hangs off B's
      const tenantB = await tx.tenant.findUnique({ where: { id: B.tenantId }, include: { projects: true, memberships: true, apiKeys: true } });
      expect([...(tenantB?.projects ?? []), ...(tenantB?.memberships ?? []), ...(tenantB?.apiKeys ?? [])]).toEqual([]);
      expect(await tx.user.findMany({ where: { memberships: { some: { tenantId: B.tenantId } } } })).toEqual([]);
      const counted = await tx.user.findUnique({ where: { id: shared.userId }, include: { _count: true } });
      expect(counted!._count).toEqual({ memberships: 1, deployments: 1 });
      const perProject = await tx.project.findMany({ select: { _count: { select: { deployments: true } } } });
      expect(perProject.map((p) => p._count.deployments)).toEqual([3, 3]);
    });
  });
});

describe("writes as tenant A leave B untouched", () => {
  it("update and delete of a B row by its key fail as not found", async () => {
    const key = { tenantId_id: { tenantId: B.tenantId, id: B.projectIds[0]! } };
    await expect(asA((tx) => tx.project.update({ where: key, data: { name: "hacked" } }))).rejects.toMatchObject({ code: "P2025" });
    await expect(asA((tx) => tx.project.delete({ where: key }))).rejects.toMatchObject({ code: "P2025" });
    await expect(asA((tx) => tx.user.update({ where: { id: B.userId }, data: { name: "hacked" } }))).rejects.toThrow(/permission denied/i);
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("updateMany and deleteMany without a tenant filter touch A's rows only", async () => {
    await asA(async (tx) => {
      expect((await tx.deployment.updateMany({ where: { id: { in: B.allDeploymentIds } }, data: { branch: "hacked" } })).count).toBe(0);
      expect((await tx.deployment.updateMany({ data: { commitSha: "a-only" } })).count).toBe(6);
      expect((await tx.deployment.deleteMany({ where: { tenantId: B.tenantId } })).count).toBe(0);
      expect((await tx.apiKey.deleteMany({})).count).toBe(1);
    });
    expect(await dbs.platform.apiKey.count({ where: { tenantId: A.tenantId } })).toBe(0);
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("a row with tenant_id B cannot be created, directly, in bulk or nested", async () => {
    await expect(asA((tx) => tx.project.create({ data: { tenantId: B.tenantId, name: "evil", slug: "evil" } }))).rejects.toThrow(RLS_VIOLATION);
    await expect(
      asA((tx) => tx.auditLogEntry.createMany({ data: [{ tenantId: B.tenantId, action: "evil", actorType: "SYSTEM" }] })),
    ).rejects.toThrow(RLS_VIOLATION);
    await expect(
      asA((tx) =>
        tx.project.create({ data: { tenantId: B.tenantId, name: "evil2", slug: "evil2", deployments: { create: [{ status: "READY" }] } } }),
      ),
    ).rejects.toThrow(RLS_VIOLATION);
    await expect(
      asA((tx) =>
        tx.user.update({ where: { id: shared.userId }, data: { memberships: { create: { tenantId: B.tenantId, role: "OWNER" } } } }),
      ),
    ).rejects.toThrow(RLS_VIOLATION);
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("moving an A row to B is refused", async () => {
    await expect(
      asA((tx) => tx.workflow.update({ where: { tenantId_id: { tenantId: A.tenantId, id: A.workflowId } }, data: { tenantId: B.tenantId, projectId: null } })),
    ).rejects.toThrow(RLS_VIOLATION);
    expect((await dbs.platform.workflow.findUnique({ where: { tenantId_id: { tenantId: A.tenantId, id: A.workflowId } } }))?.tenantId).toBe(A.tenantId);
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("a nested create (project with deployments) in A succeeds and lands in A", async () => {
    const p = await asA((tx) =>
      tx.project.create({
        data: { tenantId: A.tenantId, name: "nested", slug: "nested", deployments: { create: [{ status: "READY" }, { status: "QUEUED" }] } },
        include: { deployments: true },
      }),
    );
    expect(p.deployments.map((d) => d.tenantId)).toEqual([A.tenantId, A.tenantId]);
    expect(await dbs.platform.deployment.count({ where: { projectId: p.id, tenantId: A.tenantId } })).toBe(2);
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("nested writes through a user reach A's rows only", async () => {
    await asA((tx) =>
      tx.user.update({
        where: { id: shared.userId },
        data: { deployments: { updateMany: { where: {}, data: { branch: "touched" } } }, memberships: { deleteMany: {} } },
      }),
    );
    expect(await dbs.platform.membership.findUnique({ where: { tenantId_id: { tenantId: A.tenantId, id: shared.membershipA } } })).toBeNull();
    expect((await dbs.platform.deployment.findUnique({ where: { tenantId_id: { tenantId: A.tenantId, id: A.allDeploymentIds[0]! } } }))?.branch).toBe(
      "touched",
    );
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("the app role cannot change tenants or the audit log", async () => {
    await expect(asA((tx) => tx.tenant.update({ where: { id: A.tenantId }, data: { name: "x" } }))).rejects.toThrow(/permission denied/i);
    await expect(asA((tx) => tx.auditLogEntry.deleteMany({}))).rejects.toThrow(/permission denied/i);
    expect(await dbs.platform.auditLogEntry.count({ where: { tenantId: A.tenantId } })).toBe(1);
    expect(await snapshotB()).toEqual(bBefore);
  });
});

describe("the global tables hold alone too", () => {
  const gid = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString("base64");

  it("a tenant session sees its own tenant row only", async () => {
    const got = await asA(async (tx) => ({
      all: (await tx.tenant.findMany()).map((t) => t.id),
      b: await tx.tenant.findUnique({ where: { id: B.tenantId } }),
      bySlug: await tx.tenant.findUnique({ where: { slug: B.slug } }),
      raw: (await tx.$queryRaw<Array<{ id: string }>>`SELECT id::text FROM tenants`).map((r) => r.id),
      viaProject: (await tx.project.findFirst({ where: { id: A.projectIds[0] }, include: { tenant: true } }))?.tenant.id,
    }));
    expect(got).toEqual({ all: [A.tenantId], b: null, bySlug: null, raw: [A.tenantId], viaProject: A.tenantId });
    // without a tenant, none
    expect(await dbs.app.tenant.count()).toBe(0);
    // control: the platform role sees both
    expect(await dbs.platform.tenant.count({ where: { id: { in: [A.tenantId, B.tenantId] } } })).toBe(2);
  });

  it("users: one rule, app_visible_user, decides both the RLS policy and raw SQL (members of the tenant, or the caller)", async () => {
    const policies = await dbs.platform.$queryRaw<Array<{ name: string; qual: string }>>`
      SELECT policyname AS name, qual FROM pg_policies WHERE tablename = 'users' AND 'tenantgraph_app' = ANY(roles)`;
    expect(policies).toEqual([{ name: "visible_users", qual: expect.stringMatching(/^app_visible_user\(id, app_current_tenant\(\), app_current_user\(\)\)$/) }]);
    // A new member of A: visible to A; B's owner: visible to A only as the caller.
    const member = randomUUID();
    await dbs.platform.user.create({ data: { id: member, email: `member-${member}@example.test`, authSubject: `sub|member|${member}` } });
    await dbs.platform.membership.create({ data: { tenantId: A.tenantId, userId: member, role: "VIEWER" } });
    const seen = (caller: string | undefined) =>
      asTenant(A.tenantId, async (tx) => ids(await tx.user.findMany({ where: { id: { in: [A.userId, B.userId, member] } } })), { userId: caller });
    expect(await seen(undefined)).toEqual(sorted([A.userId, member]));
    expect(await seen(B.userId)).toEqual(sorted([A.userId, B.userId, member]));
    const fn = await asA((tx) =>
      tx.$queryRaw<Array<{ a: boolean; b: boolean; caller: boolean }>>`
        SELECT app_visible_user(${A.userId}::uuid, ${A.tenantId}::uuid, NULL) AS a,
               app_visible_user(${B.userId}::uuid, ${A.tenantId}::uuid, NULL) AS b,
               app_visible_user(${B.userId}::uuid, ${A.tenantId}::uuid, ${B.userId}::uuid) AS caller`,
    );
    expect(fn).toEqual([{ a: true, b: false, caller: true }]);
  });

  it("the app role cannot change a user's global identity, even a member's or its own", async () => {
    const before = await dbs.platform.user.findMany({ where: { id: { in: [A.userId, shared.userId] } }, orderBy: { id: "asc" } });
    const attempts = [
      `UPDATE users SET is_platform_admin = true WHERE id = '${A.userId}'`,
      `UPDATE users SET auth_subject = 'sub|stolen' WHERE id = '${shared.userId}'`,
      `UPDATE users SET email = 'attacker@example.test' WHERE id = '${shared.userId}'`,
      `UPDATE users SET name = 'renamed' WHERE id = '${A.userId}'`,
      `DELETE FROM users WHERE id = '${shared.userId}'`,
    ];
    for (const sql of attempts) {
      await expect(asTenant(A.tenantId, (tx) => tx.$executeRawUnsafe(sql), { userId: A.userId }), sql).rejects.toThrow(/permission denied/i);
    }
    await expect(asA((tx) => tx.user.update({ where: { id: shared.userId }, data: { isPlatformAdmin: true } }))).rejects.toThrow(/permission denied/i);
    expect(await dbs.platform.user.findMany({ where: { id: { in: [A.userId, shared.userId] } }, orderBy: { id: "asc" } })).toEqual(before);
  });

  it("the app role cannot create users, so no platform admin either", async () => {
    const id = randomUUID();
    for (const sql of [
      `INSERT INTO users (id, email, auth_subject, is_platform_admin) VALUES ('${id}', 'evil-${id}@example.test', 'sub|evil|${id}', true)`,
      `INSERT INTO users (id, email, auth_subject) VALUES ('${id}', 'plain-${id}@example.test', 'sub|plain|${id}')`,
    ]) {
      await expect(asA((tx) => tx.$executeRawUnsafe(sql)), sql).rejects.toThrow(/permission denied/i);
    }
    await expect(asA((tx) => tx.user.create({ data: { id, email: `p-${id}@example.test`, authSubject: id, isPlatformAdmin: true } }))).rejects.toThrow(
      /permission denied/i,
    );
    expect(await dbs.platform.user.findUnique({ where: { id } })).toBeNull();
  });

  it("audit entries carry the session's tenant and actor, and never claim cross_tenant", async () => {
    const keyA = A.apiKeyId;
    const entry = (over: Record<string, unknown>) => ({
      tenantId: A.tenantId,
      action: "test.claim",
      actorType: "USER" as const,
      actorId: gid("User", A.userId),
      ...over,
    });
    const asUser = <T>(fn: (tx: Prisma.TransactionClient) => Promise<T>) => asTenant(A.tenantId, fn, { userId: A.userId });
    const asKey = <T>(fn: (tx: Prisma.TransactionClient) => Promise<T>) => asTenant(A.tenantId, fn, { apiKeyId: keyA });
    const before = await dbs.platform.auditLogEntry.count();
    // the honest entries land
    await asUser((tx) => tx.auditLogEntry.create({ data: entry({}) }));
    await asKey((tx) => tx.auditLogEntry.create({ data: entry({ actorType: "API_KEY", actorId: gid("ApiKey", keyA) }) }));
    expect(await dbs.platform.auditLogEntry.count()).toBe(before + 2);
    // every lie is refused
    const lies: Array<[string, () => Promise<unknown>]> = [
      ["cross_tenant", () => asUser((tx) => tx.auditLogEntry.create({ data: entry({ crossTenant: true }) }))],
      ["another user", () => asUser((tx) => tx.auditLogEntry.create({ data: entry({ actorId: gid("User", shared.userId) }) }))],
      ["B's user", () => asUser((tx) => tx.auditLogEntry.create({ data: entry({ actorId: gid("User", B.userId) }) }))],
      ["SYSTEM", () => asUser((tx) => tx.auditLogEntry.create({ data: entry({ actorType: "SYSTEM", actorId: null }) }))],
      ["no actor id", () => asUser((tx) => tx.auditLogEntry.create({ data: entry({ actorId: null }) }))],
      ["a key, as a user", () => asUser((tx) => tx.auditLogEntry.create({ data: entry({ actorType: "API_KEY", actorId: gid("ApiKey", keyA) }) }))],
      ["a user, as a key", () => asKey((tx) => tx.auditLogEntry.create({ data: entry({}) }))],
      ["B's key", () => asKey((tx) => tx.auditLogEntry.create({ data: entry({ actorType: "API_KEY", actorId: gid("ApiKey", B.apiKeyId) }) }))],
      ["no session actor", () => asA((tx) => tx.auditLogEntry.create({ data: entry({}) }))],
      ["raw SQL", () => asUser((tx) => tx.$executeRawUnsafe(
        `INSERT INTO audit_log (tenant_id, action, actor_type, actor_id, cross_tenant) VALUES ('${A.tenantId}', 'x', 'USER', '${gid("User", A.userId)}', true)`))],
    ];
    for (const [what, attempt] of lies) await expect(attempt(), what).rejects.toThrow(RLS_VIOLATION);
    expect(await dbs.platform.auditLogEntry.count()).toBe(before + 2);
    // the platform role still writes cross-tenant entries
    await dbs.platform.auditLogEntry.create({ data: entry({ crossTenant: true, actorId: gid("User", B.userId) }) });
    expect(await dbs.platform.auditLogEntry.count({ where: { crossTenant: true, tenantId: A.tenantId } })).toBe(1);
  });

  it("no definer function answers about an e-mail across tenants; app_add_member only adds to the current tenant", async () => {
    const bOwner = (await dbs.platform.user.findUniqueOrThrow({ where: { id: B.userId } })).email;
    await expect(asA((tx) => tx.$queryRaw`SELECT app_user_id_by_email(${bOwner})`)).rejects.toThrow(/does not exist/);
    // Definer functions the app role may execute: app_add_member alone.
    const definers = await dbs.platform.$queryRaw<Array<{ name: string }>>`
      SELECT p.proname AS name FROM pg_proc p
       WHERE p.prosecdef AND p.pronamespace = current_schema()::regnamespace
         AND has_function_privilege('tenantgraph_app', p.oid, 'EXECUTE') ORDER BY 1`;
    expect(definers.map((d) => d.name)).toEqual(["app_add_member"]);
    // Without a tenant it refuses.
    await expect(dbs.app.$queryRaw`SELECT * FROM app_add_member(${bOwner}, ${null}, 'VIEWER'::"Role")`).rejects.toThrow(/app.tenant_id is not set/);
    // A temporary table of the caller does not stand in for users.
    const fresh = `fresh-${randomUUID()}@example.test`;
    const [row] = await asA(async (tx) => {
      await tx.$executeRawUnsafe(`CREATE TEMP TABLE users (id uuid, email text, name text, auth_subject text) ON COMMIT DROP`);
      return tx.$queryRaw<Array<{ membership_id: string; already_member: boolean }>>`SELECT * FROM app_add_member(${fresh}, ${"Fresh"}, 'VIEWER'::"Role")`;
    });
    const created = await dbs.platform.user.findUniqueOrThrow({ where: { email: fresh } });
    expect(created).toMatchObject({ authSubject: fresh, isPlatformAdmin: false, name: "Fresh" });
    expect(await dbs.platform.membership.findUnique({ where: { tenantId_id: { tenantId: A.tenantId, id: row!.membership_id } } })).toMatchObject({
      userId: created.id,
      role: "VIEWER",
    });
    expect(row!.already_member).toBe(false);
    // Again: the same membership, flagged.
    const [again] = await asA((tx) => tx.$queryRaw<Array<{ membership_id: string; already_member: boolean }>>`SELECT * FROM app_add_member(${fresh}, ${null}, 'ADMIN'::"Role")`);
    expect(again).toEqual({ membership_id: row!.membership_id, already_member: true });
    expect(await dbs.platform.membership.count({ where: { userId: created.id } })).toBe(1);
    expect(await snapshotB()).toEqual(bBefore);
  });
});

/**
 * Wall 1 alone: the tenant-scope Prisma extension over a superuser
 * connection, to which row-level security does not apply. Everything tenant
 * B owns must stay invisible and untouched through a client scoped to A.
 */
import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { PrismaClient } from "../../src/generated/prisma/client.ts";
import { tenantScope } from "../../src/tenancy/tenant-scope.ts";
import { createTestDatabase, ownerClient, seedTwoTenants, type SeededTenant, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;
let owner: PrismaClient;
let A: SeededTenant;
let B: SeededTenant;
let scoped: ReturnType<typeof scopedTo>;
/** A user who is a member of both tenants, and created one deployment in each. */
let shared: { userId: string; membershipA: string; membershipB: string };

const scopedTo = (tenantId: string) => owner.$extends(tenantScope({ tenantId }));
const sorted = (xs: string[]) => [...xs].sort();
const ids = (rows: Array<{ id: string }>) => sorted(rows.map((r) => r.id));

/** Everything tenant B owns, read through the unscoped owner client. */
async function snapshotB() {
  const t = B.tenantId;
  return {
    tenant: await owner.tenant.findUnique({ where: { id: t } }),
    user: await owner.user.findUnique({ where: { id: B.userId } }),
    memberships: await owner.membership.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
    projects: await owner.project.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
    deployments: await owner.deployment.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
    workflows: await owner.workflow.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
    apiKeys: await owner.apiKey.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
    auditLog: await owner.auditLogEntry.findMany({ where: { tenantId: t }, orderBy: { id: "asc" } }),
  };
}
let bBefore: Awaited<ReturnType<typeof snapshotB>>;

beforeAll(async () => {
  db = await createTestDatabase();
  owner = ownerClient(db.url);
});

// Every test gets two tenants of its own (and the shared user), and leaves
// nothing behind: no test sees what another one wrote, in any order.
beforeEach(async () => {
  ({ A, B } = await seedTwoTenants(owner));
  const userId = randomUUID();
  await owner.user.create({ data: { id: userId, email: `shared-${userId}@example.test`, authSubject: `sub|shared|${userId}` } });
  const membershipA = randomUUID();
  const membershipB = randomUUID();
  await owner.membership.createMany({
    data: [
      { tenantId: A.tenantId, id: membershipA, userId, role: "VIEWER" },
      { tenantId: B.tenantId, id: membershipB, userId, role: "VIEWER" },
    ],
  });
  await owner.deployment.updateMany({
    where: { id: { in: [A.allDeploymentIds[0]!, B.allDeploymentIds[0]!] } },
    data: { createdById: userId },
  });
  shared = { userId, membershipA, membershipB };
  scoped = scopedTo(A.tenantId);
  bBefore = await snapshotB();
});
afterEach(async () => {
  await owner.tenant.deleteMany({});
  await owner.user.deleteMany({});
});

afterAll(async () => {
  await owner?.$disconnect();
  await db?.drop();
});

describe("the setting: wall 2 is off", () => {
  it("the owner connection is a superuser and sees both tenants", async () => {
    const [row] = await owner.$queryRaw<Array<{ su: string }>>`SELECT current_setting('is_superuser') AS su`;
    expect(row!.su).toBe("on");
    expect(await owner.project.count()).toBe(4);
    expect(bBefore.deployments).toHaveLength(6);
  });
});

describe("reads through the client scoped to A", () => {
  it("findMany returns exactly A's rows of every tenant model", async () => {
    expect(ids(await scoped.project.findMany())).toEqual(sorted(A.projectIds));
    expect(ids(await scoped.deployment.findMany())).toEqual(sorted(A.allDeploymentIds));
    expect(ids(await scoped.workflow.findMany())).toEqual([A.workflowId]);
    expect(ids(await scoped.apiKey.findMany())).toEqual([A.apiKeyId]);
    expect(ids(await scoped.auditLogEntry.findMany())).toEqual([A.auditEntryId]);
    expect(ids(await scoped.membership.findMany())).toEqual(sorted([A.membershipId, shared.membershipA]));
    expect(ids(await scoped.user.findMany())).toEqual(sorted([A.userId, shared.userId]));
    expect(ids(await scoped.tenant.findMany())).toEqual([A.tenantId]);
  });

  it("a where naming B's ids or B's tenant finds nothing of B", async () => {
    expect(await scoped.project.findMany({ where: { id: { in: B.projectIds } } })).toEqual([]);
    expect(await scoped.project.findFirst({ where: { id: B.projectIds[0] } })).toBeNull();
    const byTenant = await scoped.project.findMany({ where: { tenantId: B.tenantId } });
    expect(byTenant.filter((p) => p.tenantId !== A.tenantId)).toEqual([]);
    expect(await scoped.deployment.findFirst({ where: { OR: [{ id: B.allDeploymentIds[0] }, { tenantId: B.tenantId, branch: "B-branch-0" }] } })).toBeNull();
  });

  it("findUnique by B's compound key, with B's or with A's tenantId, gives null", async () => {
    const b = B.projectIds[0]!;
    expect(await scoped.project.findUnique({ where: { tenantId_id: { tenantId: B.tenantId, id: b } } })).toBeNull();
    expect(await scoped.project.findUnique({ where: { tenantId_id: { tenantId: A.tenantId, id: b } } })).toBeNull();
    expect(await scoped.project.findUnique({ where: { tenantId_slug: { tenantId: B.tenantId, slug: "b-p0" } } })).toBeNull();
    await expect(scoped.project.findUniqueOrThrow({ where: { tenantId_id: { tenantId: B.tenantId, id: b } } })).rejects.toThrow();
    // a global unique key of a tenant model
    expect(await scoped.apiKey.findUnique({ where: { secretHash: bBefore.apiKeys[0]!.secretHash } })).toBeNull();
    // control: A's own key is found
    const a = await scoped.project.findUnique({ where: { tenantId_id: { tenantId: A.tenantId, id: A.projectIds[0]! } } });
    expect(a?.id).toBe(A.projectIds[0]);
  });

  it("count, aggregate and groupBy cover A only", async () => {
    expect(await scoped.project.count()).toBe(2);
    expect(await scoped.deployment.count()).toBe(6);
    expect(await scoped.deployment.count({ where: { id: { in: B.allDeploymentIds } } })).toBe(0);
    const agg = await scoped.deployment.aggregate({ _count: { _all: true }, _max: { createdAt: true, branch: true } });
    expect(agg._count._all).toBe(6);
    expect(agg._max.branch).toBe("A-branch-2");
    const newestA = await owner.deployment.aggregate({ where: { tenantId: A.tenantId }, _max: { createdAt: true } });
    expect(agg._max.createdAt).toEqual(newestA._max.createdAt);
    const byTenant = await scoped.deployment.groupBy({ by: ["tenantId"], _count: { _all: true } });
    expect(byTenant).toEqual([{ tenantId: A.tenantId, _count: { _all: 6 } }]);
    const byProject = await scoped.deployment.groupBy({ by: ["projectId"], _count: { _all: true } });
    expect(sorted(byProject.map((g) => g.projectId))).toEqual(sorted(A.projectIds));
  });

  it("Tenant: B's tenant row is not found", async () => {
    expect(await scoped.tenant.findUnique({ where: { id: B.tenantId } })).toBeNull();
    expect(await scoped.tenant.findUnique({ where: { slug: B.slug } })).toBeNull();
    expect(await scoped.tenant.findFirst({ where: { slug: B.slug } })).toBeNull();
    expect((await scoped.tenant.findUnique({ where: { id: A.tenantId } }))?.id).toBe(A.tenantId);
  });

  it("relation traversals (include) show only A's rows", async () => {
    const projects = await scoped.project.findMany({ include: { deployments: true, workflows: true } });
    expect(projects).toHaveLength(2);
    for (const p of projects) expect(ids(p.deployments)).toEqual(sorted(A.deploymentIds[p.id]!));
    const tenant = await scoped.tenant.findUnique({ where: { id: A.tenantId }, include: { projects: true, memberships: true } });
    expect(ids(tenant!.projects)).toEqual(sorted(A.projectIds));
    const user = await scoped.user.findUnique({ where: { id: shared.userId }, include: { memberships: true, deployments: true } });
    expect(ids(user!.memberships)).toEqual([shared.membershipA]);
    expect(ids(user!.deployments)).toEqual([A.allDeploymentIds[0]!]);
    const memberships = await scoped.membership.findMany({ include: { user: { include: { memberships: true } } } });
    for (const m of memberships) expect(m.user.memberships.every((x) => x.tenantId === A.tenantId)).toBe(true);
    // through a to-one relation and back down a list
    const deployment = await scoped.deployment.findFirst({ include: { project: { include: { deployments: true } } } });
    expect(deployment!.project.deployments.every((d) => d.tenantId === A.tenantId)).toBe(true);
  });

  it("B's users are not found, and a relation filter naming B matches nothing of B", async () => {
    expect(await scoped.user.findUnique({ where: { id: B.userId } })).toBeNull();
    const users = await scoped.user.findMany({ where: { memberships: { some: { tenantId: B.tenantId } } } });
    expect(users.map((u) => u.id)).not.toContain(B.userId);
    const none = await scoped.user.findMany({ where: { memberships: { some: { id: shared.membershipB } } } });
    expect(none).toEqual([]);
    const byB = await scoped.project.findMany({ where: { deployments: { some: { id: { in: B.allDeploymentIds } } } } });
    expect(byB).toEqual([]);
  });

  it("_count selections count A's rows only", async () => {
    const projects = await scoped.project.findMany({ select: { id: true, _count: { select: { deployments: true } } } });
    expect(projects.map((p) => p._count.deployments)).toEqual([3, 3]);
    const counted = await scoped.user.findUnique({
      where: { id: shared.userId },
      select: { _count: { select: { memberships: true, deployments: true } } },
    });
    expect(counted!._count).toEqual({ memberships: 1, deployments: 1 });
    const all = await scoped.user.findUnique({ where: { id: shared.userId }, include: { _count: true } });
    expect(all!._count).toEqual({ memberships: 1, deployments: 1 });
    const tenant = await scoped.tenant.findUnique({ where: { id: A.tenantId }, select: { _count: { select: { projects: true, deployments: true } } } });
    expect(tenant!._count).toEqual({ projects: 2, deployments: 6 });
  });
});

describe("writes through the client scoped to A leave B untouched", () => {
  it("update and delete of a B row by its key fail as not found", async () => {
    const key = { tenantId_id: { tenantId: B.tenantId, id: B.projectIds[0]! } };
    await expect(scoped.project.update({ where: key, data: { name: "hacked" } })).rejects.toMatchObject({ code: "P2025" });
    await expect(scoped.project.delete({ where: key })).rejects.toMatchObject({ code: "P2025" });
    await expect(
      scoped.deployment.delete({ where: { tenantId_id: { tenantId: A.tenantId, id: B.allDeploymentIds[0]! } } }),
    ).rejects.toMatchObject({ code: "P2025" });
    await expect(scoped.apiKey.update({ where: { secretHash: bBefore.apiKeys[0]!.secretHash }, data: { name: "x" } })).rejects.toMatchObject({
      code: "P2025",
    });
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("updateMany and deleteMany touch A's rows only", async () => {
    expect((await scoped.deployment.updateMany({ where: { id: { in: B.allDeploymentIds } }, data: { branch: "hacked" } })).count).toBe(0);
    expect((await scoped.deployment.deleteMany({ where: { id: { in: B.allDeploymentIds } } })).count).toBe(0);
    expect((await scoped.deployment.updateMany({ where: { tenantId: B.tenantId }, data: { url: "https://a.example" } })).count).toBe(6);
    expect((await scoped.deployment.updateMany({ data: { commitSha: "a-only" } })).count).toBe(6);
    expect((await scoped.apiKey.deleteMany({})).count).toBe(1);
    expect(await owner.apiKey.count({ where: { tenantId: A.tenantId } })).toBe(0);
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("moving a row to B is refused", async () => {
    await expect(
      scoped.project.update({ where: { tenantId_id: { tenantId: A.tenantId, id: A.projectIds[1]! } }, data: { tenantId: B.tenantId } }),
    ).rejects.toThrow(/tenant/);
    await expect(scoped.workflow.updateMany({ data: { tenantId: B.tenantId } })).rejects.toThrow(/tenant/);
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("create with tenantId B in data lands in A; create without tenantId gets A", async () => {
    const forced = await scoped.project.create({ data: { tenantId: B.tenantId, name: "forced", slug: "forced" } });
    expect(forced.tenantId).toBe(A.tenantId);
    const plain = await scoped.auditLogEntry.create({ data: { action: "test.plain", actorType: "SYSTEM" } as never });
    expect(plain.tenantId).toBe(A.tenantId);
    const many = await scoped.deployment.createMany({
      data: [{ tenantId: B.tenantId, projectId: A.projectIds[0]! }, { projectId: A.projectIds[1]! } as never],
    });
    expect(many.count).toBe(2);
    // B's project id with A's tenant: no such project in A, the composite foreign key refuses it
    await expect(scoped.deployment.create({ data: { tenantId: B.tenantId, projectId: B.projectIds[0]! } })).rejects.toThrow();
    expect(await owner.project.count({ where: { tenantId: A.tenantId } })).toBe(3);
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("a create through the tenant relation is refused", async () => {
    await expect(
      scoped.project.create({ data: { name: "via relation", slug: "via-relation", tenant: { connect: { id: B.tenantId } } } as never }),
    ).rejects.toThrow(/tenant/);
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("a nested create (project with deployments) lands in A", async () => {
    const p = await scoped.project.create({
      data: { name: "nested", slug: "nested", deployments: { create: [{ status: "READY" }, { status: "BUILDING" }] } } as never,
      include: { deployments: true },
    });
    expect(p.tenantId).toBe(A.tenantId);
    expect(p.deployments).toHaveLength(2);
    const stored = await owner.deployment.findMany({ where: { projectId: p.id } });
    expect(stored.map((d) => d.tenantId)).toEqual([A.tenantId, A.tenantId]);
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("nested writes through a global model (User) cannot reach B", async () => {
    // create a membership in B through the user
    await expect(
      scoped.user.update({
        where: { id: shared.userId },
        data: { memberships: { create: { tenantId: B.tenantId, id: randomUUID(), role: "OWNER" } } } as never,
      }),
    ).rejects.toThrow(/tenant/);
    await expect(
      scoped.user.update({
        where: { id: A.userId },
        data: { memberships: { createMany: { data: [{ tenantId: B.tenantId, role: "OWNER" }] } } } as never,
      }),
    ).rejects.toThrow(/tenant/);
    // change or delete the user's rows in every tenant
    await scoped.user.update({
      where: { id: shared.userId },
      data: { deployments: { updateMany: { where: {}, data: { branch: "touched" } } } },
    });
    await scoped.user.update({ where: { id: shared.userId }, data: { memberships: { deleteMany: {} } } });
    expect(await owner.membership.findUnique({ where: { tenantId_id: { tenantId: A.tenantId, id: shared.membershipA } } })).toBeNull();
    expect((await owner.deployment.findUnique({ where: { tenantId_id: { tenantId: A.tenantId, id: A.allDeploymentIds[0]! } } }))?.branch).toBe(
      "touched",
    );
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("a user outside A cannot be updated", async () => {
    await expect(scoped.user.update({ where: { id: B.userId }, data: { name: "hacked" } })).rejects.toMatchObject({ code: "P2025" });
    expect((await scoped.user.updateMany({ where: { id: B.userId }, data: { name: "hacked" } })).count).toBe(0);
    expect(await snapshotB()).toEqual(bBefore);
  });

  it("the platform audit log and tenant writes are refused", async () => {
    await expect(scoped.platformAuditEntry.findMany()).rejects.toThrow(/tenant scope/);
    await expect(scoped.tenant.update({ where: { id: A.tenantId }, data: { name: "x" } })).rejects.toThrow(/tenant scope/);
    await expect(scoped.tenant.delete({ where: { id: B.tenantId } })).rejects.toThrow(/tenant scope/);
    expect(await snapshotB()).toEqual(bBefore);
  });
});

import type { PrismaClient } from "../generated/prisma/client.ts";
import type { DeploymentStatus, Plan, Role } from "../generated/prisma/enums.ts";

/**
 * Demo data: acme (PRO), globex (FREE), wayne (ENTERPRISE), each with a
 * member of every role, projects, deployments and workflows, plus a platform
 * admin. Idempotent: it upserts by slug / e-mail and fills only what is
 * missing. Runs on the platform path (it writes to several tenants).
 */
export const DEMO_TENANTS: { slug: string; name: string; plan: Plan }[] = [
  { slug: "acme", name: "Acme Corp", plan: "PRO" },
  { slug: "globex", name: "Globex", plan: "FREE" },
  { slug: "wayne", name: "Wayne Enterprises", plan: "ENTERPRISE" },
];
export const DEMO_ROLES: Role[] = ["OWNER", "ADMIN", "DEVELOPER", "VIEWER"];
export const DEMO_PLATFORM_ADMIN = { email: "ops@platform.test", subject: "ops@platform.test", name: "Platform Operator" };

export const demoEmail = (role: Role, slug: string) => `${role.toLowerCase()}@${slug}.test`;

const STATUSES: DeploymentStatus[] = ["READY", "READY", "BUILDING", "ERROR", "QUEUED", "CANCELED"];

export async function seedDemo(db: PrismaClient): Promise<{ created: boolean }> {
  let created = false;
  await db.user.upsert({
    where: { email: DEMO_PLATFORM_ADMIN.email },
    create: {
      email: DEMO_PLATFORM_ADMIN.email,
      authSubject: DEMO_PLATFORM_ADMIN.subject,
      name: DEMO_PLATFORM_ADMIN.name,
      isPlatformAdmin: true,
    },
    update: { isPlatformAdmin: true },
  });
  for (const t of DEMO_TENANTS) {
    const existing = await db.tenant.findUnique({ where: { slug: t.slug } });
    if (existing) continue;
    created = true;
    await db.$transaction(async (tx) => {
      const tenant = await tx.tenant.create({ data: { slug: t.slug, name: t.name, plan: t.plan } });
      const users: { id: string }[] = [];
      for (const role of DEMO_ROLES) {
        const email = demoEmail(role, t.slug);
        const user = await tx.user.upsert({
          where: { email },
          create: { email, authSubject: email, name: `${t.name} ${role.toLowerCase()}` },
          update: {},
        });
        users.push(user);
        await tx.membership.create({ data: { tenantId: tenant.id, userId: user.id, role } });
      }
      const projectCount = t.plan === "FREE" ? 2 : 4;
      const base = Date.now() - 30 * 24 * 3600_000;
      for (let p = 0; p < projectCount; p++) {
        const project = await tx.project.create({
          data: {
            tenantId: tenant.id,
            name: `${t.name} ${["Web", "API", "Worker", "Docs"][p]}`,
            slug: ["web", "api", "worker", "docs"][p]!,
            description: `Demo project ${p + 1} of ${t.name}`,
            createdAt: new Date(base + p * 3600_000),
          },
        });
        await tx.deployment.createMany({
          data: Array.from({ length: 6 }, (_, d) => ({
            tenantId: tenant.id,
            projectId: project.id,
            status: STATUSES[d % STATUSES.length]!,
            branch: d % 2 ? "main" : `feature-${d}`,
            commitSha: (p * 16 + d).toString(16).padStart(7, "0") + "abcdef0",
            url: `https://${project.slug}-${d}.${t.slug}.example.dev`,
            createdById: users[2]!.id,
            createdAt: new Date(base + p * 3600_000 + (d + 1) * 600_000),
          })),
        });
        await tx.workflow.create({
          data: {
            tenantId: tenant.id,
            projectId: project.id,
            name: `${project.slug} CI`,
            config: { steps: ["install", "test", "deploy"] },
          },
        });
      }
      await tx.auditLogEntry.create({
        data: { tenantId: tenant.id, action: "tenant.seed", actorType: "SYSTEM", actorLabel: "seed" },
      });
      // Many small inserts: on a busy machine they outlast Prisma's default 5 s.
    }, { maxWait: 10_000, timeout: 120_000 });
  }
  return { created };
}

/** Makes the configured subjects platform admins (creating users when missing). */
export async function ensurePlatformAdmins(db: PrismaClient, subjects: string[]) {
  for (const subject of subjects) {
    const email = subject.includes("@") ? subject.toLowerCase() : `${subject.toLowerCase()}@platform.invalid`;
    const existing = await db.user.findUnique({ where: { authSubject: subject } });
    if (existing) {
      if (!existing.isPlatformAdmin) await db.user.update({ where: { id: existing.id }, data: { isPlatformAdmin: true } });
    } else {
      await db.user.upsert({
        where: { email },
        create: { email, authSubject: subject, isPlatformAdmin: true, name: subject },
        update: { isPlatformAdmin: true },
      });
    }
  }
}

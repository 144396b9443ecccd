import { badInput } from "../../errors.ts";
import type { Plan } from "../../generated/prisma/enums.ts";
import { crossTenant } from "../../policy/platform.ts";
import type { Context } from "../../tenancy/context.ts";
import * as v from "../../schema/validate.ts";
import { conflictToInput } from "../projects/project.service.ts";

export interface ProvisionInput {
  name: string;
  slug: string;
  plan: Plan;
  region?: string | null;
  owner: { email: string; name?: string | null; authSubject?: string | null };
}

/** Tenant, owner (created or reused by e-mail) and OWNER membership: all or nothing. */
export async function provisionTenant(ctx: Context, input: ProvisionInput) {
  const name = v.name("name", input.name);
  const slug = v.slug("slug", input.slug);
  const region = input.region == null ? undefined : v.name("region", input.region);
  const email = input.owner.email.trim().toLowerCase();
  const ownerName = input.owner.name == null ? null : v.name("owner.name", input.owner.name);
  const subject = input.owner.authSubject?.trim() || email;
  const result = await crossTenant(
    ctx,
    { action: "tenant.provision", metadata: { input } },
    async (tx) => {
      const tenant = await tx.tenant.create({ data: { name, slug, plan: input.plan, region } });
      let owner = await tx.user.findUnique({ where: { email } });
      if (!owner) {
        owner = await tx.user.create({ data: { email, name: ownerName, authSubject: subject } });
      }
      await tx.membership.create({ data: { tenantId: tenant.id, userId: owner.id, role: "OWNER" } });
      await tx.auditLogEntry.create({
        data: {
          tenantId: tenant.id,
          action: "tenant.provision",
          actorType: "USER",
          actorLabel: ctx.user?.email ?? null,
          crossTenant: true,
          metadata: { slug, plan: input.plan },
          requestId: ctx.requestId,
          ip: ctx.ip,
        },
      });
      return { tenant, owner };
    },
  ).catch((err) => conflictToInput(err, "slug", `Tenant slug "${slug}" is taken`));
  await ctx.deps.directory.invalidateTenant(result.tenant.id, result.tenant.slug);
  return result;
}

export function assertPlan(plan: string): Plan {
  if (!["FREE", "PRO", "ENTERPRISE"].includes(plan)) throw badInput("plan", "Unknown plan");
  return plan as Plan;
}

import { builder } from "../../graphql/builder.ts";
import { PlanEnum, TenantStatusEnum } from "../../graphql/enums.ts";
import { uuidOrNone } from "../../graphql/ids.ts";

export const TenantRef = builder.prismaNode("Tenant", {
  id: { field: "id" },
  // Through the tenant-scoped client a tenant can only load itself.
  findUnique: (id) => ({ id: uuidOrNone(id) }),
  nullable: true,
  fields: (t) => ({
    slug: t.exposeString("slug"),
    name: t.exposeString("name"),
    plan: t.expose("plan", { type: PlanEnum }),
    status: t.expose("status", { type: TenantStatusEnum }),
    region: t.exposeString("region"),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

builder.queryField("tenant", (t) =>
  t.auth("VIEWER").field({
    type: TenantRef,
    description: "The current tenant.",
    resolve: (_root, _args, ctx) => ctx.tenant as never,
  }),
);

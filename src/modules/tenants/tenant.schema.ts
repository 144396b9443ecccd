import { builder } from "../../graphql/builder.ts";
import { PlacementEnum, PlanEnum, TenantStatusEnum } from "../../graphql/enums.ts";
import type { Placement } from "../../generated/prisma/enums.ts";
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
    placement: t.field({
      type: PlacementEnum,
      description: "Where the tenant's rows live: shared tables, a schema or a database of its own (docs/placement.md).",
      // A Prisma row has the column; a directory entry (ctx.tenant) has { placement, server, name }.
      resolve: (tenant) => {
        const p = (tenant as { placement?: Placement | { placement: Placement } }).placement;
        return typeof p === "string" ? p : (p?.placement ?? "POOLED");
      },
    }),
  }),
});

builder.queryField("tenant", (t) =>
  t.auth("VIEWER").field({
    type: TenantRef,
    description: "The current tenant.",
    resolve: (_root, _args, ctx) => ctx.tenant as never,
  }),
);

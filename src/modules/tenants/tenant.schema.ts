import type { Tenant } from "../../generated/prisma/client.ts";
import { builder } from "../../graphql/builder.ts";
import { PlacementEnum, PlanEnum, TenantStatusEnum } from "../../graphql/enums.ts";
import type { Placement } from "../../generated/prisma/enums.ts";
import { uuidOrNone } from "../../graphql/ids.ts";

/**
 * What Tenant's fields read. The directory's tenant (`ctx.tenant`) and the
 * platform's usage rows carry these, not every column of the row.
 */
export interface TenantParent {
  id: string;
  slug: string;
  name: string;
  plan: Tenant["plan"];
  status: Tenant["status"];
  region: string;
  /** A Date, or the directory's ISO string: DateTime serializes both alike. */
  createdAt: Date | string;
  domain?: string | null;
  featureOverrides?: unknown;
  /** Known effective features (the directory's); else plan + featureOverrides. */
  features?: readonly string[];
}

/** A tenant as TenantRef's parent: Pothos types it as the whole Prisma row, but the fields read only a TenantParent. */
export const asTenant = (tenant: TenantParent) => tenant as Tenant;

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
    resolve: (_root, _args, ctx) => asTenant(ctx.tenant),
  }),
);

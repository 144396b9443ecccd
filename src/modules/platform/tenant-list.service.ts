import type { Prisma } from "../../generated/prisma/client.ts";
import type { Plan, TenantStatus } from "../../generated/prisma/enums.ts";
import { badInput } from "../../errors.ts";
import { toConnection, type PageRequest } from "../../graphql/pagination.ts";
import type { PlatformTx } from "../../policy/platform.ts";

/** Platform.tenants: one page of every tenant, filtered by status, plan or a search. */

export interface TenantFilterInput {
  status?: TenantStatus | null;
  plan?: Plan | null;
  search?: string | null;
}

/** One page of tenants (Platform.tenants); the total is counted only when asked for. */
export async function tenantPage(tx: PlatformTx, page: PageRequest, where: Prisma.TenantWhereInput, withCount: boolean) {
  const rows = await tx.tenant.findMany({
    where: page.where ? { AND: [where, page.where] } : where,
    orderBy: page.orderBy,
    take: page.take,
  });
  const total = withCount ? await tx.tenant.count({ where }) : 0;
  return toConnection(rows, page, () => Promise.resolve(total));
}

export function tenantWhere(filter: TenantFilterInput | null | undefined): Prisma.TenantWhereInput {
  const where: Prisma.TenantWhereInput = {};
  if (!filter) return where;
  if (filter.status) where.status = filter.status;
  if (filter.plan) where.plan = filter.plan;
  const search = filter.search?.trim();
  if (search) {
    if (search.length > 100) throw badInput("filter.search", "filter.search must be at most 100 characters");
    where.OR = [{ name: { contains: search, mode: "insensitive" } }, { slug: { contains: search, mode: "insensitive" } }];
  }
  return where;
}

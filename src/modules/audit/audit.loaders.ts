import type { Prisma } from "../../generated/prisma/client.ts";
import { findPage, type PageRequest } from "../../graphql/pagination.ts";
import type { Context } from "../../tenancy/context.ts";

/** One page of the tenant's audit log, newest first; `query` is Pothos's selection for the nodes. */
export const auditLogPage = (ctx: Context, page: PageRequest, where: Prisma.AuditLogEntryWhereInput, query: object) =>
  findPage(ctx.db.auditLogEntry, page, where, query);

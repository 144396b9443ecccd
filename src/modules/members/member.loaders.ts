import { findPage, type PageRequest } from "../../graphql/pagination.ts";
import type { Context } from "../../tenancy/context.ts";

/** One page of the tenant's members, oldest first; `query` is Pothos's selection for the nodes. */
export const memberPage = (ctx: Context, page: PageRequest, query: object) => findPage(ctx.db.membership, page, undefined, query);

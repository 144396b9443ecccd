import { findPage, type PageRequest } from "../../graphql/pagination.ts";
import type { Context } from "../../tenancy/context.ts";

/** One page of the tenant's API keys, newest first; `query` is Pothos's selection for the nodes. */
export const apiKeyPage = (ctx: Context, page: PageRequest, query: object) => findPage(ctx.db.apiKey, page, undefined, query);

import SchemaBuilder from "@pothos/core";
import DirectivesPlugin from "@pothos/plugin-directives";
import PrismaPlugin from "@pothos/plugin-prisma";
import RelayPlugin from "@pothos/plugin-relay";
import type PrismaTypes from "./generated/pothos-types.ts";
import { getDatamodel } from "./generated/pothos-types.ts";
import type { QuotaResource, Role } from "./generated/prisma/enums.ts";
import type { Context } from "./tenancy/context.ts";

/**
 * The one SchemaBuilder. It defines no types: those live in
 * src/modules/<domain>/<domain>.schema.ts, imported by src/schema/index.ts.
 */
export type PolicyDirectives = {
  auth: { locations: "OBJECT" | "FIELD_DEFINITION"; args: { requires: Role } };
  quota: { locations: "FIELD_DEFINITION"; args: { resource: QuotaResource; cost?: number } };
  crossTenant: { locations: "FIELD_DEFINITION"; args: Record<string, never> };
  audit: { locations: "FIELD_DEFINITION"; args: { action: string } };
};

export const builder = new SchemaBuilder<{
  Context: Context;
  PrismaTypes: PrismaTypes;
  Directives: PolicyDirectives;
  DefaultFieldNullability: false;
  DefaultEdgesNullability: false;
  DefaultNodeNullability: false;
  Scalars: {
    ID: { Input: string; Output: string };
    DateTime: { Input: Date; Output: Date | string };
    JSON: { Input: unknown; Output: unknown };
    EmailAddress: { Input: string; Output: string };
  };
}>({
  defaultFieldNullability: false,
  plugins: [PrismaPlugin, RelayPlugin, DirectivesPlugin],
  prisma: {
    // The request's tenant-scoped handle: every Prisma call Pothos makes goes
    // through both isolation walls.
    client: (ctx) => ctx.db as never,
    dmmf: getDatamodel(),
    filterConnectionTotalCount: true,
    onUnusedQuery: process.env.VITEST ? "error" : null,
  },
  relay: {
    clientMutationId: "omit",
    cursorType: "String",
    nodeQueryOptions: { nullable: true },
    nodesQueryOptions: { nullable: { list: false, items: true } },
    edgesFieldOptions: { nullable: false },
    nodeFieldOptions: { nullable: false },
  },
  directives: { useGraphQLToolsUnorderedDirectives: true },
});

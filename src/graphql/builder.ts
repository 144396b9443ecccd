import SchemaBuilder from "@pothos/core";
import DirectivesPlugin from "@pothos/plugin-directives";
import PrismaPlugin from "@pothos/plugin-prisma";
import RelayPlugin from "@pothos/plugin-relay";
import PolicyEnforcerPlugin from "../policy/enforcer.ts";
import NodesIdsPlugin from "./nodes-ids.ts";
import "../policy/auth-field.ts";
import type PrismaTypes from "../generated/pothos-types.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";
import { getDatamodel } from "../generated/pothos-types.ts";
import type { QuotaResource, Role } from "../generated/prisma/enums.ts";
import type { Context } from "../tenancy/context.ts";
import type { AuditAction } from "../db/audit-actions.ts";
import { NIL_UUID } from "../uuid.ts";
import { decodeGlobalId } from "./ids.ts";

/**
 * The one SchemaBuilder. It defines no types: those live in
 * src/modules/<domain>/<domain>.schema.ts, imported by src/schema.ts.
 */
export type PolicyDirectives = {
  auth: { locations: "OBJECT" | "FIELD_DEFINITION"; args: { requires: Role } };
  quota: { locations: "FIELD_DEFINITION"; args: { resource: QuotaResource; cost?: number } };
  crossTenant: { locations: "FIELD_DEFINITION"; args: Record<string, never> };
  audit: { locations: "FIELD_DEFINITION"; args: { action: AuditAction } };
  feature: { locations: "OBJECT" | "FIELD_DEFINITION"; args: { name: string } };
};

/**
 * Whether `node(id)` can reach `typename`: an object type of this builder
 * that the relay plugin can load by id (every prismaNode and nodeRef), read
 * from the builder's own configuration rather than a hand-kept list.
 */
function isNodeType(typename: string): boolean {
  if (!builder.configStore.hasConfig(typename)) return false;
  const config = builder.configStore.getTypeConfig(typename);
  const options = config.pothosOptions as Record<string, unknown>;
  return config.kind === "Object" && ["loadWithoutCache", "loadManyWithoutCache", "loadOne", "loadMany"].some((k) => typeof options[k] === "function");
}

/** node(id) and nodes(ids): the one decoder (src/graphql/ids.ts); a well-formed id of a type that is not a node finds nothing. */
function decodeGlobalID(globalID: string): { typename: string; id: string } {
  const { typename, id } = decodeGlobalId("id", globalID);
  return isNodeType(typename) ? { typename, id } : { typename: "Tenant", id: NIL_UUID };
}

export type BuilderTypes = typeof builder extends PothosSchemaTypes.SchemaBuilder<infer T> ? T : never;

export const builder = new SchemaBuilder<{
  Context: Context;
  PrismaTypes: PrismaTypes;
  Directives: PolicyDirectives;
  DefaultFieldNullability: false;
  DefaultEdgesNullability: false;
  DefaultNodeNullability: false;
  // Every connection carries its total, counted only when asked (src/graphql/pagination.ts).
  Connection: { totalCount: () => Promise<number> };
  Scalars: {
    ID: { Input: string; Output: string };
    DateTime: { Input: Date; Output: Date | string };
    JSON: { Input: unknown; Output: unknown };
    EmailAddress: { Input: string; Output: string };
  };
}>({
  defaultFieldNullability: false,
  plugins: [PrismaPlugin, RelayPlugin, DirectivesPlugin, PolicyEnforcerPlugin, NodesIdsPlugin],
  prisma: {
    // The request's tenant-scoped handle: every Prisma call Pothos makes goes
    // through both isolation walls.
    // Pothos types this as a PrismaClient; it calls only the model delegates, which the request's transaction client has.
    client: (ctx) => ctx.db as unknown as PrismaClient,
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
    decodeGlobalID,
  },
  directives: { useGraphQLToolsUnorderedDirectives: true },
});

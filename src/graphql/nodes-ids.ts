import SchemaBuilder, { BasePlugin, type PothosOutputFieldConfig, type SchemaTypes } from "@pothos/core";
import type { GraphQLFieldResolver } from "graphql";
import { badInput } from "../errors.ts";
import { decodeGlobalId } from "./ids.ts";

/**
 * `nodes(ids:)`: a malformed entry is BAD_USER_INPUT naming `ids[<index>]`
 * (Pothos decodes the list before the resolver, one id at a time, with no
 * index). Wraps outside the argument mappers, like the enforcer.
 */
class NodesIdsPlugin<Types extends SchemaTypes> extends BasePlugin<Types> {
  override wrapArgMappers(
    resolver: GraphQLFieldResolver<unknown, Types["Context"], object> | undefined,
    fieldConfig: PothosOutputFieldConfig<Types>,
  ): GraphQLFieldResolver<unknown, Types["Context"], object> | undefined {
    if (!resolver || fieldConfig.parentType !== "Query" || fieldConfig.name !== "nodes") return resolver;
    return (parent, args, ctx, info) => {
      const ids = (args as { ids?: unknown }).ids;
      if (Array.isArray(ids)) {
        ids.forEach((id, i) => {
          try {
            decodeGlobalId(`ids[${i}]`, String(id));
          } catch {
            throw badInput(`ids[${i}]`, `ids[${i}] is not a valid id`);
          }
        });
      }
      return resolver(parent, args, ctx, info);
    };
  }
}

declare global {
  export namespace PothosSchemaTypes {
    export interface Plugins<Types extends SchemaTypes> {
      nodesIds: NodesIdsPlugin<Types>;
    }
  }
}

SchemaBuilder.registerPlugin("nodesIds", NodesIdsPlugin);

export default "nodesIds" as const;

import { printSchemaWithDirectives } from "@graphql-tools/utils";
import {
  DirectiveLocation,
  GraphQLDirective,
  GraphQLEnumType,
  GraphQLInt,
  GraphQLNonNull,
  GraphQLSchema,
  GraphQLString,
  lexicographicSortSchema,
} from "graphql";
import { builder } from "./graphql/builder.ts";
import "./graphql/scalars.ts";
import "./graphql/enums.ts";
import "./modules/tenants/tenant.schema.ts";
import "./modules/users/user.schema.ts";
import "./modules/users/viewer.schema.ts";
import "./modules/projects/project.schema.ts";
import "./modules/deployments/deployment.schema.ts";
import "./modules/workflows/workflow.schema.ts";
import "./modules/audit/audit.schema.ts";
import "./modules/platform/platform.schema.ts";
import "./modules/platform/tenant-lifecycle.schema.ts";
import "./modules/members/member.schema.ts";
import "./modules/api-keys/api-key.schema.ts";
import "./modules/usage/usage.schema.ts";
import "./modules/live/live.schema.ts";
import "./modules/cache/cache.schema.ts";
import "./modules/tenant-config/tenant-config.schema.ts";
import "./modules/stats/deployment-stats.schema.ts";

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});

/** The policy directives of SPEC sections 6 and 10, declared so the schema shows them. */
function policyDirectives(schema: GraphQLSchema): GraphQLDirective[] {
  const role = schema.getType("Role") as GraphQLEnumType;
  const resource = schema.getType("QuotaResource") as GraphQLEnumType;
  return [
    new GraphQLDirective({
      name: "auth",
      description: "Lowest tenant role allowed to use the field or type.",
      locations: [DirectiveLocation.OBJECT, DirectiveLocation.FIELD_DEFINITION],
      args: { requires: { type: new GraphQLNonNull(role), defaultValue: "VIEWER" } },
    }),
    new GraphQLDirective({
      name: "quota",
      description: "Consumes `cost` of the tenant's quota `resource`; over the limit: QUOTA_EXCEEDED.",
      locations: [DirectiveLocation.FIELD_DEFINITION],
      args: {
        resource: { type: new GraphQLNonNull(resource) },
        cost: { type: new GraphQLNonNull(GraphQLInt), defaultValue: 1 },
      },
    }),
    new GraphQLDirective({
      name: "crossTenant",
      description: "Platform admins only; runs on the audited cross-tenant path.",
      locations: [DirectiveLocation.FIELD_DEFINITION],
    }),
    new GraphQLDirective({
      name: "feature",
      description: "The plan feature the tenant needs (docs/tenant-config.md); without it: FEATURE_NOT_AVAILABLE.",
      locations: [DirectiveLocation.FIELD_DEFINITION, DirectiveLocation.OBJECT],
      args: { name: { type: new GraphQLNonNull(GraphQLString) } },
    }),
    new GraphQLDirective({
      name: "audit",
      description: "Writes an audit entry with this action in the same transaction as the change.",
      locations: [DirectiveLocation.FIELD_DEFINITION],
      args: { action: { type: new GraphQLNonNull(GraphQLString) } },
    }),
  ];
}

function buildSchema(): GraphQLSchema {
  const base = builder.toSchema({ sortSchema: false });
  const config = base.toConfig();
  return new GraphQLSchema({ ...config, directives: [...config.directives, ...policyDirectives(base)] });
}

export const schema = buildSchema();

/** The SDL written to schema.graphql (sorted, with the policy directives). */
export function printSchema(): string {
  return printSchemaWithDirectives(lexicographicSortSchema(schema)) + "\n";
}


import { Prisma } from "../generated/prisma/client.ts";
import { isObj, TENANT_MODELS, TenantScopeViolation, type Obj, type TenantScope } from "./tenant-scope-model.ts";
import { scopeSelection, scopeWhere } from "./tenant-scope-reads.ts";
import { scopeData } from "./tenant-scope-writes.ts";

/**
 * Wall 1: a Prisma client extension that confines every operation to one
 * tenant. It injects the tenant into the `where` of every read, update and
 * delete, into the `data` of every create, into relation filters, and into
 * every `include`/`select` of a relation that leads to tenant-owned rows.
 * Wall 2 (row-level security) holds on its own; this one holds when RLS is
 * off, and gives clean NOT_FOUNDs instead of policy violations.
 */

const READS_AND_WHERE_WRITES = new Set([
  "findUnique",
  "findUniqueOrThrow",
  "findFirst",
  "findFirstOrThrow",
  "findMany",
  "count",
  "aggregate",
  "groupBy",
  "update",
  "updateMany",
  "updateManyAndReturn",
  "delete",
  "deleteMany",
]);

/** Rewrites the arguments of one operation so that it cannot leave the scope. */
export function scopeArgs(model: string, operation: string, rawArgs: unknown, scope: TenantScope): Obj {
  const args: Obj = isObj(rawArgs) ? { ...rawArgs } : {};
  const tenantModel = TENANT_MODELS.has(model);
  if (!tenantModel && model !== "User" && model !== "Tenant") {
    throw new TenantScopeViolation(`${model} is not reachable from a tenant-scoped client`);
  }
  const writes = !operation.startsWith("find") && !["count", "aggregate", "groupBy"].includes(operation);
  if (writes && model === "Tenant") throw new TenantScopeViolation("tenants are changed by platform operations only");
  if (model === "User" && (operation.startsWith("delete") || operation === "upsert")) {
    throw new TenantScopeViolation(`User.${operation} is not allowed from a tenant-scoped client`);
  }

  if (READS_AND_WHERE_WRITES.has(operation)) args.where = scopeWhere(model, args.where, scope);
  if (operation === "upsert") {
    args.where = scopeWhere(model, args.where, scope);
    args.create = scopeData(model, args.create, scope, "create");
    args.update = scopeData(model, args.update, scope, "update");
  }
  if (operation.startsWith("create")) args.data = scopeData(model, args.data, scope, "create");
  if (operation.startsWith("update")) args.data = scopeData(model, args.data, scope, "update");
  if (args.select) args.select = scopeSelection(model, args.select, scope);
  if (args.include) args.include = scopeSelection(model, args.include, scope);
  return args;
}

/** The extension itself: every model operation passes through scopeArgs. */
export function tenantScope(scope: TenantScope) {
  return Prisma.defineExtension({
    name: "tenant-scope",
    query: {
      $allModels: {
        $allOperations({ model, operation, args, query }) {
          return query(scopeArgs(model, operation, args, scope) as typeof args);
        },
      },
    },
  });
}

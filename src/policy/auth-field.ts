import { RootFieldBuilder, type FieldKind, type SchemaTypes } from "@pothos/core";
import type { Role } from "../generated/prisma/enums.ts";
import type { TenantGate } from "../tenancy/context.ts";

/**
 * `t.auth(role).field({...})`: the one way a field declares `@auth`. It adds
 * the directive (which the enforcer, src/policy/enforcer.ts, checks before
 * the resolver runs) and gives the resolver a context whose caller, tenant
 * and role are non-optional by type: the check and the type come from the
 * same call, so a resolver cannot need the tenant without being gated.
 */
interface Gatable {
  createField(options: { directives?: Record<string, unknown>; extensions?: Record<string, unknown> }): unknown;
}

/** Marks a field declared through `t.auth` (the enforcer refuses a field-level @auth without it). */
export const GATED_BY_T_AUTH = "tenantgraph.gatedByTAuth";

/** A copy of the field builder whose fields get `@auth(requires)` and `extra` directives, marked as gated. */
function gate(builder: Gatable, requires: Role, extra: Record<string, unknown>, check: (directives: Record<string, unknown>) => void): Gatable {
  const create = builder.createField;
  const gated = Object.create(builder) as Gatable;
  gated.createField = function createField(options) {
    const directives = options.directives ?? {};
    if ("auth" in directives) throw new Error("t.auth(...) already declares @auth");
    check(directives);
    return create.call(this, {
      ...options,
      directives: { auth: { requires }, ...extra, ...directives },
      extensions: { ...options.extensions, [GATED_BY_T_AUTH]: true },
    });
  };
  return gated;
}

const fieldBuilder = RootFieldBuilder.prototype as unknown as {
  auth(this: Gatable, requires: Role): Gatable;
  authOrCrossTenant(this: Gatable, requires: Role): Gatable;
};

fieldBuilder.auth = function auth(requires) {
  return gate(this, requires, {}, (directives) => {
    // @crossTenant lets a platform admin in without a tenant: the context type would lie.
    if ("crossTenant" in directives) throw new Error("t.auth(...) promises a tenant; a field a platform admin may call without one is t.authOrCrossTenant(...)");
  });
};

fieldBuilder.authOrCrossTenant = function authOrCrossTenant(requires) {
  return gate(this, requires, { crossTenant: {} }, () => {});
};

declare global {
  export namespace PothosSchemaTypes {
    export interface RootFieldBuilder<Types extends SchemaTypes, ParentShape, Kind extends FieldKind = FieldKind> {
      /** Declares `@auth(requires: role)`; the resolver's context has its tenant and role. */
      auth: (requires: Role) => RootFieldBuilder<Omit<Types, "Context"> & { Context: Types["Context"] & TenantGate }, ParentShape, Kind>;
      /**
       * `@auth(requires: role)` for a caller in the tenant, or `@crossTenant`
       * for a platform admin with no tenant (audited): the context keeps its
       * optional tenant, so the resolver must tell the two apart.
       */
      authOrCrossTenant: (requires: Role) => RootFieldBuilder<Types, ParentShape, Kind>;
    }
  }
}

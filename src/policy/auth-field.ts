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

(RootFieldBuilder.prototype as unknown as { auth(this: Gatable, requires: Role): Gatable }).auth = function auth(requires) {
  const create = this.createField;
  const gated = Object.create(this) as Gatable;
  gated.createField = function createField(options) {
    if (options.directives && "auth" in options.directives) throw new Error("t.auth(...) already declares @auth");
    return create.call(this, {
      ...options,
      directives: { auth: { requires }, ...options.directives },
      extensions: { ...options.extensions, [GATED_BY_T_AUTH]: true },
    });
  };
  return gated;
};

declare global {
  export namespace PothosSchemaTypes {
    export interface RootFieldBuilder<Types extends SchemaTypes, ParentShape, Kind extends FieldKind = FieldKind> {
      /** Declares `@auth(requires: role)`; the resolver's context has its tenant and role. */
      auth: (requires: Role) => RootFieldBuilder<Omit<Types, "Context"> & { Context: Types["Context"] & TenantGate }, ParentShape, Kind>;
    }
  }
}

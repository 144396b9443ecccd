import SchemaBuilder, { BasePlugin, type PothosOutputFieldConfig, type SchemaTypes } from "@pothos/core";
import type { GraphQLFieldResolver } from "graphql";
import { featureNotAvailable, quotaExceeded } from "../errors.ts";
import type { Context } from "../tenancy/context.ts";
import type { ScopedTx } from "../tenancy/scoped-client.ts";
import { GATED_BY_T_AUTH } from "./auth-field.ts";
import { onCrossTenantPath } from "./cross-tenant-path.ts";
import { isAuditAction } from "../db/audit-actions.ts";
import { assertTenantRole, requirePlatformAdmin } from "./roles.ts";
import { directiveList, isEnforced, policyOf, type FieldPolicy } from "./field-policy.ts";
import { checkCountQuota, isCountResource, reserveWindowQuota, type CountResource } from "./quota.ts";

/**
 * The one enforcement point of @auth, @crossTenant, @quota, @audit and
 * @feature (docs/policy.md): a Pothos plugin that reads the directives when
 * the schema is built and wraps only the resolvers that carry one. Access is
 * decided before the arguments are decoded.
 *
 * @crossTenant together with @auth (setTenantIdentityProvider): a caller
 * acting in a tenant needs that role there (and the field's @feature); a
 * platform admin without a tenant takes the cross-tenant path.
 */

/** Whether this call takes the cross-tenant path (see @crossTenant with @auth above). */
const crossTenantCall = (ctx: Context, policy: FieldPolicy) => policy.crossTenant && !(policy.auth && ctx.tenant);

/** Access checks of @auth, @crossTenant and @feature; throws the coded error. */
export function checkAccess(ctx: Context, policy: FieldPolicy): void {
  if (crossTenantCall(ctx, policy)) return requirePlatformAdmin(ctx);
  if (policy.auth || policy.quota || policy.audit || policy.feature) {
    assertTenantRole(ctx, policy.auth ?? "VIEWER");
    // Features as PostgreSQL reported them for this request (authorize.ts).
    const features: readonly string[] = ctx.tenant.features;
    if (policy.feature && !features.includes(policy.feature)) {
      throw featureNotAvailable(policy.feature, ctx.tenant.plan);
    }
  }
}

/** Mutations that only take data away stay open past the storage limit (docs/tenant-config.md). */
const SHRINKING = /\.(delete|remove|revoke)$/;

/**
 * STORAGE_BYTES: past the limit, a tenant mutation that can add data is
 * refused. The usage is the background measurement PostgreSQL reported for
 * this request (src/modules/storage/), so it lags by at most one refresh.
 */
function checkStorage(ctx: Context, policy: FieldPolicy): void {
  const tenant = ctx.tenant;
  if (!tenant || !policy.audit || SHRINKING.test(policy.audit)) return;
  const limit = tenant.limits.STORAGE_BYTES;
  if (limit === null || limit === undefined) return;
  const used = tenant.storageBytes ?? 0;
  if (used + 1 > limit) throw quotaExceeded("STORAGE_BYTES", limit, used, 1);
}

/** The mutation in progress, per request (mutation fields run one at a time). */
export interface DirectiveScope {
  field: string;
  action?: string;
  input: unknown;
  audited: string[];
  countQuota?: { resource: CountResource; cost: number; checked: boolean };
  crossTenant: boolean;
}

const scopes = new WeakMap<object, DirectiveScope>();

export const currentDirectiveScope = (ctx: Context): DirectiveScope | undefined => scopes.get(ctx);

/**
 * Checks the field's count-based @quota inside `tx`, once: the service of a
 * mutation declared `@quota(<count resource>)` calls it in the transaction
 * that inserts (the enforcer fails the mutation if it never did).
 * `alreadyInserted`: the new rows are already part of the count.
 */
export async function checkDeclaredCountQuota(tx: ScopedTx, ctx: Context, alreadyInserted: boolean): Promise<void> {
  const q = scopes.get(ctx)?.countQuota;
  if (!q || q.checked || !ctx.tenant) return;
  await checkCountQuota(tx, ctx.tenant, q.resource, q.cost, alreadyInserted);
  q.checked = true;
}

/** Pothos types a plugin for any builder; this one is registered on ours only, whose context is a Context. */
const ours = (ctx: unknown) => ctx as Context;

export function enforce<C>(resolver: GraphQLFieldResolver<unknown, C, object>, policy: FieldPolicy, field: string): GraphQLFieldResolver<unknown, C, object> {
  if (!policy.quota && !policy.audit) {
    return (parent, args, ctx, info) => {
      checkAccess(ours(ctx), policy);
      // Admitted to the cross-tenant path for this resolver only (src/policy/cross-tenant-path.ts).
      return crossTenantCall(ours(ctx), policy) ? onCrossTenantPath(ctx as object, () => resolver(parent, args, ctx, info)) : resolver(parent, args, ctx, info);
    };
  }
  const quota = policy.quota;
  const countQuota = quota && isCountResource(quota.resource) ? quota : undefined;
  const windowQuota = quota && !countQuota ? quota : undefined;
  return async (parent, args, requestCtx, info) => {
    const ctx = ours(requestCtx);
    checkAccess(ctx, policy);
    const crossTenant = crossTenantCall(ctx, policy);
    if (!crossTenant) checkStorage(ctx, policy);
    const scope: DirectiveScope = {
      field,
      action: policy.audit,
      input: (args as { input?: unknown }).input ?? args,
      audited: [],
      countQuota: countQuota && { resource: countQuota.resource as CountResource, cost: countQuota.cost, checked: false },
      crossTenant,
    };
    const reservation = windowQuota
      ? await reserveWindowQuota(ctx.store, ctx.tenant!, windowQuota.resource, windowQuota.cost, ctx.now())
      : null;
    // Given back if the change is not kept: the resolver fails (below), or it
    // succeeded and the mutation's transaction does not commit (a failed
    // payload read, a failed COMMIT; review-1330 F8). A refund runs once.
    if (reservation) ctx.tenantDb.afterRollback(() => reservation.refund());
    scopes.set(ctx, scope);
    let result: unknown;
    try {
      result = await (crossTenant ? onCrossTenantPath(ctx, () => resolver(parent, args, requestCtx, info)) : resolver(parent, args, requestCtx, info));
    } catch (err) {
      await reservation?.refund().catch(() => {});
      throw err;
    } finally {
      scopes.delete(ctx);
    }
    // Programming errors, not caller errors: plain Errors, masked for the client.
    if (policy.audit && !crossTenant && !scope.audited.includes(policy.audit)) {
      throw new Error(`@audit(${policy.audit}) on ${field}: the resolver wrote no audit entry`);
    }
    if (scope.countQuota && !scope.countQuota.checked) {
      throw new Error(`@quota(${scope.countQuota.resource}) on ${field}: the count was never checked in the transaction`);
    }
    return result;
  };
}

export class PolicyEnforcerPlugin<Types extends SchemaTypes> extends BasePlugin<Types> {
  override onOutputFieldConfig(fieldConfig: PothosOutputFieldConfig<Types>) {
    // The field's directives as declared: this hook runs before plugin-directives'
    // (Pothos calls them last plugin first), so they are not in `extensions` yet.
    const declared = (fieldConfig.pothosOptions as { directives?: unknown }).directives ?? fieldConfig.extensions?.directives;
    const policy = policyOf(declared);
    if (directiveList(declared).some((d) => d.name === "auth") && !fieldConfig.extensions?.[GATED_BY_T_AUTH]) {
      // The directive alone would leave the resolver's tenant and role optional by type.
      throw new Error(`${fieldConfig.parentType}.${fieldConfig.name}: declare @auth with t.auth(role)`);
    }
    if (policy.audit && !isAuditAction(policy.audit)) {
      throw new Error(`${fieldConfig.parentType}.${fieldConfig.name}: @audit(${policy.audit}) is not in AUDIT_ACTIONS (src/db/audit-actions.ts)`);
    }
    if ((policy.quota || policy.audit) && fieldConfig.parentType !== "Mutation") {
      throw new Error(`${fieldConfig.parentType}.${fieldConfig.name}: @quota and @audit belong on mutations`);
    }
    return fieldConfig;
  }

  // Wraps outside the argument mappers (global id decoding): access is
  // decided before any input is looked at.
  override wrapArgMappers(
    resolver: GraphQLFieldResolver<unknown, Types["Context"], object> | undefined,
    fieldConfig: PothosOutputFieldConfig<Types>,
  ): GraphQLFieldResolver<unknown, Types["Context"], object> | undefined {
    if (!resolver || (this.options as { disablePolicyEnforcer?: boolean }).disablePolicyEnforcer) return resolver;
    const policy = this.policyFor(fieldConfig);
    if (!isEnforced(policy)) return resolver;
    return enforce(resolver, policy, `${fieldConfig.parentType}.${fieldConfig.name}`);
  }

  // A subscription's access is checked when the stream opens (and its
  // resolver, wrapped above, checks it again for every event).
  override wrapSubscribe(
    subscribe: GraphQLFieldResolver<unknown, Types["Context"], object> | undefined,
    fieldConfig: PothosOutputFieldConfig<Types>,
  ): GraphQLFieldResolver<unknown, Types["Context"], object> | undefined {
    if (!subscribe || (this.options as { disablePolicyEnforcer?: boolean }).disablePolicyEnforcer) return subscribe;
    const policy = this.policyFor(fieldConfig);
    if (!isEnforced(policy)) return subscribe;
    return (parent, args, ctx, info) => {
      checkAccess(ours(ctx), policy);
      return subscribe(parent, args, ctx, info);
    };
  }

  private policyFor(fieldConfig: PothosOutputFieldConfig<Types>): FieldPolicy {
    const typeConfig = this.buildCache.getTypeConfig(fieldConfig.parentType);
    return policyOf(fieldConfig.extensions?.directives, typeConfig.extensions?.directives);
  }
}

declare global {
  export namespace PothosSchemaTypes {
    export interface Plugins<Types extends SchemaTypes> {
      policyEnforcer: PolicyEnforcerPlugin<Types>;
    }
    export interface BuildSchemaOptions<Types extends SchemaTypes> {
      /** Builds the schema without the enforcer: for measuring its cost only. */
      disablePolicyEnforcer?: boolean;
    }
  }
}

SchemaBuilder.registerPlugin("policyEnforcer", PolicyEnforcerPlugin);

export default "policyEnforcer" as const;

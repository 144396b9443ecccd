import { platformDirectory } from "../../policy/platform.ts";
import { Prisma, type Tenant } from "../../generated/prisma/client.ts";
import { badInput, featureNotAvailable, notFound } from "../../errors.ts";
import { writeAudit } from "../../policy/audit.ts";
import type { Context } from "../../tenancy/context.ts";
import { effectiveFeatures, FEATURES, isFeature, type Feature } from "../../tenancy/features.ts";
import { jwksUrlRefusal } from "../../tenancy/tenant-idp.ts";
import { changeTenant } from "../platform/tenant-lifecycle.service.ts";

/**
 * Per-tenant configuration (docs/tenant-config.md): the feature set, the
 * custom domain and the tenant's own identity provider. Platform changes run
 * through changeTenant() (crossTenant(): audit entry first, same
 * transaction); an OWNER sets the identity provider of its own tenant in a
 * tenant transaction with its audit entry. Every replica applies a change on
 * its next request: PostgreSQL reports features, domain and provider with
 * the request's authorization facts (src/tenancy/authorize.ts); the cache
 * entries are also evicted.
 */

/** Unique violations come as P2002 from Prisma's own queries, as SQLSTATE 23505 from raw SQL. */
function isUniqueViolation(err: unknown): boolean {
  if (err instanceof Prisma.PrismaClientKnownRequestError) {
    return err.code === "P2002" || (err.code === "P2010" && JSON.stringify(err.meta ?? {}).includes("23505"));
  }
  const e = err as { code?: string; cause?: { code?: string; originalCode?: string }; message?: string } | null;
  return e?.code === "23505" || e?.cause?.code === "23505" || e?.cause?.originalCode === "23505" || /unique constraint|duplicate key/i.test(e?.message ?? "");
}

const taken = (field: string, message: string) => (err: unknown) => {
  if (isUniqueViolation(err)) throw badInput(field, message);
  throw err;
};

function requireFeature(tenant: Pick<Tenant, "plan" | "featureOverrides">, feature: Feature) {
  if (!effectiveFeatures(tenant.plan, tenant.featureOverrides).includes(feature)) throw featureNotAvailable(feature, tenant.plan);
}

// -- features -----------------------------------------------------------------

/** null: back to the plan's features. Unknown names are BAD_USER_INPUT naming the entry. */
export function checkFeatures(features: readonly string[] | null | undefined): Feature[] | null {
  if (features == null) return null;
  if (features.length > FEATURES.length) throw badInput("features", `features: at most ${FEATURES.length} entries`);
  const seen = new Set<Feature>();
  for (const [i, raw] of features.entries()) {
    const name = raw.trim();
    if (!isFeature(name)) throw badInput(`features[${i}]`, `Unknown feature; known: ${FEATURES.join(", ")}`);
    seen.add(name);
  }
  return FEATURES.filter((f) => seen.has(f));
}

export function setTenantFeatures(ctx: Context, tenantId: string, features: readonly string[] | null | undefined, metadata: unknown) {
  const checked = checkFeatures(features);
  return changeTenant(ctx, "tenant.setFeatures", tenantId, metadata, (tx, t) =>
    tx.tenant.update({ where: { id: t.id }, data: { featureOverrides: checked ?? Prisma.DbNull } }).then(() => {}),
  );
}

// -- custom domain --------------------------------------------------------------

const DOMAIN_RE = /^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

export function checkDomain(value: string | null | undefined, baseDomain: string | undefined): string | null {
  if (value == null) return null;
  const domain = value.trim().toLowerCase().replace(/\.$/, "");
  if (!DOMAIN_RE.test(domain)) throw badInput("domain", "domain must be a host name such as api.example.com (no scheme, port or path)");
  if (baseDomain && (domain === baseDomain || domain.endsWith(`.${baseDomain}`))) {
    throw badInput("domain", "domain must be outside BASE_DOMAIN (its subdomains already name tenants)");
  }
  return domain;
}

export async function setTenantDomain(ctx: Context, tenantId: string, value: string | null | undefined, metadata: unknown) {
  const domain = checkDomain(value, ctx.tenantConfig.baseDomain);
  let previous: string | null = null;
  const tenant = await changeTenant(ctx, "tenant.setDomain", tenantId, metadata, async (tx, t) => {
    if (domain !== null) requireFeature(t, "custom_domain");
    previous = t.domain;
    await tx.tenant.update({ where: { id: t.id }, data: { domain } });
  }).catch(taken("domain", "This domain belongs to another tenant"));
  await ctx.directory.invalidateDomain(previous, domain);
  return tenant;
}

// -- identity provider -------------------------------------------------------------

export interface IdentityProviderInput {
  issuer?: string | null;
  jwksUrl?: string | null;
  audience?: string | null;
}

/**
 * The provider to store; null removes it. Issuer, jwksUrl and audience, or
 * neither issuer nor jwksUrl. The issuer is never the server's own
 * (JWT_ISSUER) and has no `#` (it namespaces the provider's subjects); the
 * key set is https, on no literal private address, never JWKS_URL
 * (jwksUrlRefusal, src/tenancy/tenant-idp.ts).
 */
export function checkIdentityProvider(
  input: IdentityProviderInput,
  opts: { allowHttp: boolean; globalIssuer?: string; globalJwksUrl?: string },
): { issuer: string; jwksUrl: string; audience: string } | null {
  const issuer = input.issuer?.trim() || null;
  const jwksUrl = input.jwksUrl?.trim() || null;
  if (issuer === null && jwksUrl === null) return null;
  if (issuer === null) throw badInput("issuer", "issuer is required with jwksUrl (both null removes the provider)");
  if (jwksUrl === null) throw badInput("jwksUrl", "jwksUrl is required with issuer (both null removes the provider)");
  if (issuer.length > 500 || /[\s#]/.test(issuer)) throw badInput("issuer", "issuer must be at most 500 characters, without spaces or '#'");
  if (opts.globalIssuer && issuer === opts.globalIssuer) throw badInput("issuer", "issuer is the server's own issuer (JWT_ISSUER)");
  const refused = jwksUrlRefusal(jwksUrl, opts);
  if (refused) throw badInput("jwksUrl", refused);
  const audience = input.audience?.trim() || null;
  if (audience === null) throw badInput("audience", "audience is required: the provider's tokens must name this API");
  if (audience.length > 500) throw badInput("audience", "audience must be at most 500 characters");
  return { issuer, jwksUrl: new URL(jwksUrl).toString(), audience };
}

/**
 * An OWNER acting in its tenant (the field's @auth and @feature(sso) were
 * checked) sets its own tenant's provider; a platform admin any tenant's
 * that has `sso`.
 */
export async function setTenantIdentityProvider(ctx: Context, tenantId: string, input: IdentityProviderInput, metadata: unknown) {
  const idps = ctx.tenantConfig.identityProviders;
  const idp = checkIdentityProvider(input, {
    allowHttp: idps?.allowsHttp ?? false,
    globalIssuer: idps?.globalIssuer,
    globalJwksUrl: idps?.globalJwksUrl,
  });
  const data = { idpIssuer: idp?.issuer ?? null, idpJwksUrl: idp?.jwksUrl ?? null, idpAudience: idp?.audience ?? null };
  let previous: string | null = null;
  let tenant: Tenant;
  if (ctx.tenant) {
    // A foreign tenant id behaves like one that does not exist.
    if (tenantId !== ctx.tenant.id) throw notFound("Tenant");
    const own = ctx.tenant.id;
    const info = ctx.tenant;
    tenant = await ctx.tenantDb
      .transaction(async (tx) => {
        const [current] = await tx.$queryRaw<{ idp_issuer: string | null }[]>`SELECT idp_issuer FROM tenants WHERE id = ${own}::uuid`;
        previous = current?.idp_issuer ?? null;
        await tx.$executeRaw`UPDATE tenants SET idp_issuer = ${data.idpIssuer}, idp_jwks_url = ${data.idpJwksUrl}, idp_audience = ${data.idpAudience} WHERE id = ${own}::uuid`;
        await writeAudit(tx, ctx, {
          targetType: "Tenant",
          targetId: own,
          metadata: { issuer: data.idpIssuer, jwksUrl: data.idpJwksUrl, audience: data.idpAudience },
        });
        // A placed tenant's issuer is claimed in the main database, the one registry that sees every tenant (docs/placement.md).
        await ctx.directory.claimIssuer(info, idp);
        return tx.tenant.findUniqueOrThrow({ where: { id: own } });
      })
      .catch(taken("issuer", "This issuer is registered by another tenant"));
  } else {
    tenant = await changeTenant(ctx, "tenant.setIdentityProvider", tenantId, metadata, async (tx, t) => {
      if (idp) requireFeature(t, "sso");
      previous = t.idpIssuer;
      await tx.tenant.update({ where: { id: t.id }, data });
    }).catch(taken("issuer", "This issuer is registered by another tenant"));
  }
  await ctx.directory.invalidateIssuer(previous, data.idpIssuer);
  idps?.forgetIssuers();
  // A platform admin's change (no tenant of its own) evicts on the cross-tenant path.
  await (ctx.tenant ? ctx.directory : platformDirectory(ctx)).invalidateTenant(tenant.id);
  return tenant;
}

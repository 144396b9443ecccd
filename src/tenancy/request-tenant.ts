import { randomUUID } from "node:crypto";
import { tenantAccessDenied, tenantSuspended } from "../errors.ts";
import { NO_ACCESS } from "./authorize.ts";
import type { ContextDeps } from "./context-types.ts";
import type { Directory, TenantInfo } from "./directory.ts";

/** Which tenant a request names (SPEC section 3): its id, its references, and whether it is active. */

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestIdFrom(request: Request): string {
  const incoming = request.headers.get("x-request-id");
  return incoming && REQUEST_ID_RE.test(incoming) ? incoming : randomUUID();
}

/** The host name of the request (lower case, no port); null when none. */
function hostnameOf(request: Request): string | null {
  const host = request.headers.get("host");
  if (!host) return null;
  const name = host.trim().toLowerCase().replace(/:\d+$/, "").replace(/\.$/, "");
  return name || null;
}

function subdomainTenant(hostname: string | null, baseDomain?: string): string | undefined {
  if (!hostname || !baseDomain) return undefined;
  if (!hostname.endsWith(`.${baseDomain}`)) return undefined;
  const sub = hostname.slice(0, -baseDomain.length - 1);
  return sub && !sub.includes(".") ? sub : undefined;
}

/** Custom domains are looked up only for hosts outside BASE_DOMAIN that look like domain names. */
const DOMAIN_RE = /^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
function customDomainCandidate(hostname: string | null, baseDomain?: string): string | null {
  if (!hostname || !DOMAIN_RE.test(hostname)) return null;
  if (baseDomain && (hostname === baseDomain || hostname.endsWith(`.${baseDomain}`))) return null;
  return hostname;
}

interface TenantReferences {
  refs: string[];
  /** The custom domain that named a tenant, if any. */
  domain: string | null;
  domainTenantId: string | null;
}

/**
 * The tenant references of a request, in SPEC order: the `tid` claim, the
 * tenant whose own identity provider issued the token, `X-Tenant-ID`, the
 * tenant whose custom domain the `Host` is, the subdomain of `Host` under
 * BASE_DOMAIN.
 */
async function tenantReferences(
  deps: ContextDeps,
  request: Request,
  tid: string | undefined,
  issuerTenantId: string | undefined,
): Promise<TenantReferences> {
  const hostname = hostnameOf(request);
  const domain = customDomainCandidate(hostname, deps.baseDomain);
  const domainTenantId = domain ? await deps.directory.tenantIdByDomain(domain) : null;
  const refs = [
    tid,
    issuerTenantId,
    request.headers.get("x-tenant-id")?.trim() || undefined,
    domainTenantId ?? undefined,
    subdomainTenant(hostname, deps.baseDomain),
  ].filter((r): r is string => !!r);
  return { refs, domain: domainTenantId ? domain : null, domainTenantId };
}

/**
 * The tenant a request names, as an id, before its entry is read (the
 * request context reads it with the membership and the rate limit in one
 * round trip, Directory.tenantAccess): `id` is the one tenant every
 * reference names, null when they name none or not one and the same.
 */
export interface NamedTenant extends TenantReferences {
  id: string | null;
}

export async function namedTenant(
  deps: ContextDeps,
  request: Request,
  tid: string | undefined,
  issuerTenantId: string | undefined,
): Promise<NamedTenant> {
  const refs = await tenantReferences(deps, request, tid, issuerTenantId);
  const ids = await Promise.all(refs.refs.map((r) => deps.directory.tenantIdOf(r)));
  const first = ids[0] ?? null;
  return { ...refs, id: first !== null && ids.every((id) => id === first) ? first : null };
}

/**
 * The tenant `named` names (null: it names none), `known` being the entry
 * of `named.id` when already read (Directory.tenantAccess), with the custom domain when that named it. References
 * that do not name one and the same existing tenant are refused: a conflict,
 * whether or not the others exist (so a conflict reveals nothing either).
 */
export async function tenantNamed(
  directory: Directory,
  named: NamedTenant,
  known?: TenantInfo | null,
): Promise<{ tenant: TenantInfo | null; domain: string | null }> {
  if (named.refs.length === 0) return { tenant: null, domain: null };
  const id = named.id;
  const tenant = id === null ? null : known !== undefined ? known : await directory.tenant(id);
  if (!tenant) {
    const distinct = new Set(named.refs.map((r) => r.trim().toLowerCase()));
    if (distinct.size > 1) throw tenantAccessDenied("Conflicting tenant in token, X-Tenant-ID and host");
    throw tenantAccessDenied(NO_ACCESS);
  }
  return { tenant, domain: tenant.id === named.domainTenantId ? named.domain : null };
}

/** The tenant a request names, and the custom domain when that named it. */
export async function requestTenant(
  deps: ContextDeps,
  request: Request,
  tid: string | undefined,
  issuerTenantId: string | undefined,
): Promise<{ tenant: TenantInfo | null; domain: string | null }> {
  return tenantNamed(deps.directory, await namedTenant(deps, request, tid, issuerTenantId));
}

/**
 * The tenant, if active. A cached answer that would refuse is read again
 * from PostgreSQL first: the cache never refuses on its own either (a
 * reactivation whose invalidation was lost still holds at once).
 */
export async function activeTenant(directory: Directory, tenant: TenantInfo): Promise<TenantInfo> {
  if (tenant.status === "ACTIVE") return tenant;
  const fresh = await directory.tenant(tenant.id, { fresh: true });
  if (!fresh) throw tenantAccessDenied(NO_ACCESS);
  if (fresh.status !== "ACTIVE") throw tenantSuspended(fresh.status);
  return fresh;
}


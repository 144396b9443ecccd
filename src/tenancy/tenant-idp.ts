import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from "jose";
import { unauthenticated } from "../errors.ts";
import type { VerifiedToken } from "./credentials.ts";
import type { Directory, TenantIdp } from "./directory.ts";

/**
 * Tokens of a tenant's own identity provider (SSO; docs/tenant-config.md).
 *
 * A bearer token signed RS256 or ES256 whose `iss` is the issuer a tenant
 * registered (setTenantIdentityProvider) is verified with that tenant's keys
 * only: its JWKS (jose's createRemoteJWKSet, one per URL, keys cached and
 * fetched again when a token names an unknown `kid`), its issuer, its
 * audience when set. Such a token is bound to that tenant: the context adds
 * the tenant as a reference of its own (SPEC order: `tid`, then the issuer),
 * so any other tenant named by `tid`, X-Tenant-ID, domain or subdomain is a
 * conflict, and it never carries platform-admin powers. Before execution
 * PostgreSQL confirms the tenant still has this provider and the `sso`
 * feature (src/tenancy/authorize.ts).
 *
 * A token that fails here is handed to the global verifier (JWT_SECRET /
 * JWKS_URL), so a tenant cannot take over tokens that the global keys sign,
 * even by registering their issuer; the global issuer (JWT_ISSUER) is never
 * looked up here and cannot be registered.
 */

export interface TenantIdpToken {
  token: VerifiedToken;
  tenantId: string;
  idp: TenantIdp;
}

export interface TenantIdpOptions {
  /** JWT_ISSUER: tokens of the global issuer are never a tenant's. */
  globalIssuer?: string;
  /** Minimum time between two fetches of one JWKS (jose's cooldownDuration; default 30 s). */
  cooldownMs?: number;
  /** How long fetched keys are trusted before a fetch (jose's cacheMaxAge; default 10 min). */
  cacheMaxAgeMs?: number;
  /** A JWKS fetch that takes longer fails (default 5 s). */
  timeoutMs?: number;
  /** Whether a provider's jwksUrl may be plain http (outside production only). */
  allowHttp?: boolean;
}

const MAX_KEY_SETS = 1_000;

export class TenantIdentityProviders {
  private readonly sets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

  constructor(
    private readonly directory: Directory,
    private readonly options: TenantIdpOptions = {},
  ) {}

  get allowsHttp(): boolean {
    return this.options.allowHttp ?? false;
  }
  get globalIssuer(): string | undefined {
    return this.options.globalIssuer;
  }

  /** One remote key set per JWKS URL, shared by every request of the process. */
  private keySet(url: string) {
    let set = this.sets.get(url);
    if (!set) {
      if (this.sets.size >= MAX_KEY_SETS) this.sets.delete(this.sets.keys().next().value!);
      set = createRemoteJWKSet(new URL(url), {
        cooldownDuration: this.options.cooldownMs ?? 30_000,
        cacheMaxAge: this.options.cacheMaxAgeMs ?? 600_000,
        timeoutDuration: this.options.timeoutMs ?? 5_000,
      });
      this.sets.set(url, set);
    }
    return set;
  }

  /**
   * The verified token and its tenant; null when the token is not one of a
   * tenant's provider (not RS256/ES256, no registered issuer) or its
   * provider's keys do not verify it (the global verifier decides then).
   */
  async verify(token: string): Promise<TenantIdpToken | null> {
    let iss: unknown;
    try {
      const { alg } = decodeProtectedHeader(token);
      if (alg !== "RS256" && alg !== "ES256") return null;
      iss = decodeJwt(token).iss;
    } catch {
      return null;
    }
    if (typeof iss !== "string" || iss === "" || iss === this.options.globalIssuer) return null;
    const found = await this.directory.tenantIdpByIssuer(iss);
    if (!found) return null;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keySet(found.idp.jwksUrl), {
        issuer: found.idp.issuer,
        audience: found.idp.audience ?? undefined,
        algorithms: ["RS256", "ES256"],
        requiredClaims: ["exp", "sub"],
        clockTolerance: 5,
      }));
    } catch {
      return null;
    }
    if (typeof payload.sub !== "string" || payload.sub === "") throw unauthenticated("Token has no subject");
    const tid = payload.tid;
    if (tid !== undefined && typeof tid !== "string") throw unauthenticated("Invalid tid claim");
    return {
      token: { sub: payload.sub, tid, expiresAt: typeof payload.exp === "number" ? payload.exp * 1000 : undefined },
      tenantId: found.tenantId,
      idp: found.idp,
    };
  }
}

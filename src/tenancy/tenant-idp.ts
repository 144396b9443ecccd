import { isIP } from "node:net";
import { createRemoteJWKSet, customFetch, decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from "jose";
import { unauthenticated } from "../errors.ts";
import type { VerifiedToken } from "./credentials.ts";
import type { Directory, TenantIdp } from "./directory.ts";

/**
 * Tokens of a tenant's own identity provider (SSO; docs/tenant-config.md).
 *
 * The global verifier (JWT_SECRET / JWKS_URL) is asked first (context.ts):
 * a token the global keys verify is a global token, whatever its issuer. Only
 * a token it refuses comes here. A token signed RS256 or ES256 whose `iss` is
 * the issuer a tenant registered (setTenantIdentityProvider) is then
 * verified with that tenant's keys only: its JWKS (jose's createRemoteJWKSet,
 * one per URL, keys cached and fetched again when a token names an unknown
 * `kid`), its issuer and its audience (required). Such a token is bound to
 * that tenant: the context adds the tenant as a reference of its own (SPEC
 * order: `tid`, then the issuer), so any other tenant named by `tid`,
 * X-Tenant-ID, domain or subdomain is a conflict, and it never carries
 * platform-admin powers. Before execution PostgreSQL confirms the tenant
 * still has this provider and the `sso` feature (src/tenancy/authorize.ts).
 *
 * Its subject is the provider's, never a platform one: the user it names is
 * the one whose auth_subject is `<issuer>#<sub>` (issuers cannot contain
 * `#`), created on the first login as a VIEWER of that tenant (context.ts).
 *
 * Costs a forged token can cause are bounded: the registered issuers are
 * kept in process (reloaded at most every `issuersRefreshMs`), so a made-up
 * `iss` costs no query; a failed JWKS fetch is not retried for
 * `failureCooldownMs` (jose's cooldown only follows successful fetches).
 */

export interface TenantIdpToken {
  /** `sub` is the provider's subject; `subject` the namespaced one (`<issuer>#<sub>`). */
  token: VerifiedToken;
  subject: string;
  /** The token's `email` claim, if any: shown as the name of a user it creates. */
  email: string | null;
  tenantId: string;
  idp: TenantIdp;
}

export interface TenantIdpOptions {
  /** JWT_ISSUER: tokens of the global issuer are never a tenant's, nor can it be registered. */
  globalIssuer?: string;
  /** JWKS_URL: cannot be registered as a tenant's key set. */
  globalJwksUrl?: string;
  /** Minimum time between two fetches of one JWKS (jose's cooldownDuration; default 30 s). */
  cooldownMs?: number;
  /** How long fetched keys are trusted before a fetch (jose's cacheMaxAge; default 10 min). */
  cacheMaxAgeMs?: number;
  /** A JWKS fetch that takes longer fails (default 5 s). */
  timeoutMs?: number;
  /** After a failed JWKS fetch, no fetch of that URL for this long (default 30 s). */
  failureCooldownMs?: number;
  /** The in-process set of registered issuers is reloaded at most this often (default 5 s). */
  issuersRefreshMs?: number;
  /** Whether a provider's jwksUrl may be plain http or a private address (outside production only). */
  allowHttp?: boolean;
  /** The clock (ms), for tests. */
  now?: () => number;
}

const MAX_KEY_SETS = 1_000;

/** A literal loopback, private, link-local, unique-local or unspecified address. */
function privateAddress(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  const kind = isIP(h);
  if (kind === 4) {
    const [a, b] = h.split(".").map(Number) as [number, number];
    return a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127);
  }
  if (kind === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h)?.[1];
    if (mapped) return privateAddress(mapped);
    if (/^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(h)) return true; // mapped IPv4 in hex: refused whole
    return h === "::" || h === "::1" || /^f[cd]/.test(h) || /^fe[89ab]/.test(h);
  }
  return false;
}

/**
 * Why this JWKS URL may not be fetched, or null. https only; http and
 * private/loopback/link-local literal addresses only when `allowHttp`
 * (NODE_ENV other than production: the tests' local JWKS server).
 */
export function jwksUrlRefusal(jwksUrl: string, opts: { allowHttp: boolean; globalJwksUrl?: string }): string | null {
  let url: URL;
  try {
    url = new URL(jwksUrl);
  } catch {
    return "jwksUrl must be an absolute https URL";
  }
  if (jwksUrl.length > 2000 || !(url.protocol === "https:" || (opts.allowHttp && url.protocol === "http:"))) {
    return opts.allowHttp ? "jwksUrl must be an absolute http(s) URL" : "jwksUrl must be an absolute https URL";
  }
  if (url.username || url.password) return "jwksUrl must not carry credentials";
  if (!opts.allowHttp && privateAddress(url.hostname)) return "jwksUrl must not name a loopback, private or link-local address";
  if (opts.globalJwksUrl && url.toString() === new URL(opts.globalJwksUrl).toString()) return "jwksUrl is the server's own key set (JWKS_URL)";
  return null;
}

export class TenantIdentityProviders {
  private readonly sets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
  /** JWKS URL -> until when it is not fetched again (a fetch failed). */
  private readonly failedUntil = new Map<string, number>();
  private issuers: Set<string> | null = null;
  private issuersLoadedAt = 0;
  private loadingIssuers: Promise<void> | null = null;
  private readonly now: () => number;

  constructor(
    private readonly directory: Directory,
    private readonly options: TenantIdpOptions = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  get allowsHttp(): boolean {
    return this.options.allowHttp ?? false;
  }
  get globalIssuer(): string | undefined {
    return this.options.globalIssuer;
  }
  get globalJwksUrl(): string | undefined {
    return this.options.globalJwksUrl;
  }

  /** The next token reloads the registered issuers (this process registered or removed one). */
  forgetIssuers(): void {
    this.issuers = null;
  }

  private async registered(iss: string): Promise<boolean> {
    if (this.issuers?.has(iss)) return true;
    if (this.issuers && this.now() - this.issuersLoadedAt < (this.options.issuersRefreshMs ?? 5_000)) return false;
    this.loadingIssuers ??= this.directory
      .registeredIssuers()
      .then((list) => {
        this.issuers = new Set(list);
        this.issuersLoadedAt = this.now();
      })
      .finally(() => (this.loadingIssuers = null));
    await this.loadingIssuers;
    return this.issuers?.has(iss) ?? false;
  }

  /** One remote key set per JWKS URL, shared by every request of the process. */
  private keySet(url: string) {
    let set = this.sets.get(url);
    if (!set) {
      if (this.sets.size >= MAX_KEY_SETS) this.sets.delete(this.sets.keys().next().value!);
      const fetchOnce = async (input: string, init: RequestInit) => {
        const until = this.failedUntil.get(url);
        if (until !== undefined && this.now() < until) throw new Error("JWKS fetch cooling down after a failure");
        try {
          const res = await fetch(input, init);
          if (res.status !== 200) throw new Error(`JWKS answered ${res.status}`);
          this.failedUntil.delete(url);
          return res;
        } catch (err) {
          if (this.failedUntil.size >= MAX_KEY_SETS) this.failedUntil.delete(this.failedUntil.keys().next().value!);
          this.failedUntil.set(url, this.now() + (this.options.failureCooldownMs ?? 30_000));
          throw err;
        }
      };
      set = createRemoteJWKSet(new URL(url), {
        cooldownDuration: this.options.cooldownMs ?? 30_000,
        cacheMaxAge: this.options.cacheMaxAgeMs ?? 600_000,
        timeoutDuration: this.options.timeoutMs ?? 5_000,
        [customFetch]: fetchOnce,
      });
      this.sets.set(url, set);
    }
    return set;
  }

  /**
   * The verified token and its tenant; null when the token is not one of a
   * tenant's provider (not RS256/ES256, no registered issuer) or its
   * provider's keys do not verify it.
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
    if (typeof iss !== "string" || iss === "" || iss.includes("#") || iss === this.options.globalIssuer) return null;
    if (!(await this.registered(iss))) return null;
    const found = await this.directory.tenantIdpByIssuer(iss);
    // A provider without an audience (stored before it was required) verifies nothing.
    if (!found?.idp.audience) return null;
    if (jwksUrlRefusal(found.idp.jwksUrl, { allowHttp: this.allowsHttp, globalJwksUrl: this.globalJwksUrl })) return null;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keySet(found.idp.jwksUrl), {
        issuer: found.idp.issuer,
        audience: found.idp.audience,
        algorithms: ["RS256", "ES256"],
        requiredClaims: ["exp", "sub", "aud"],
        clockTolerance: 5,
      }));
    } catch {
      return null;
    }
    if (typeof payload.sub !== "string" || payload.sub === "") throw unauthenticated("Token has no subject");
    // It becomes part of a stored auth_subject (`<issuer>#<sub>`).
    if (payload.sub.length > 500) throw unauthenticated("Token subject is too long");
    const tid = payload.tid;
    if (tid !== undefined && typeof tid !== "string") throw unauthenticated("Invalid tid claim");
    return {
      token: { sub: payload.sub, tid, expiresAt: typeof payload.exp === "number" ? payload.exp * 1000 : undefined },
      subject: `${found.idp.issuer}#${payload.sub}`,
      email: typeof payload.email === "string" ? payload.email.slice(0, 200) : null,
      tenantId: found.tenantId,
      idp: found.idp,
    };
  }
}

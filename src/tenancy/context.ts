import { randomUUID } from "node:crypto";
import type { Role } from "../generated/prisma/enums.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";
import {
  forbidden,
  tenantAccessDenied,
  tenantRequired,
  tenantSuspended,
  unauthenticated,
  AppError,
} from "../errors.ts";
import { consumeRequest, type RateLimitState } from "../infra/rate-limit.ts";
import type { Store } from "../infra/store.ts";
import { PLAN_STATEMENT_TIMEOUT_MS } from "../policy/plans.ts";
import type { TokenVerifier } from "./credentials.ts";
import type { ApiKeyInfo, Directory, TenantInfo, UserInfo } from "./directory.ts";
import { TenantDb, type ScopedTx } from "./tenant-db.ts";

/**
 * The per-request context: who is calling (user or API key), for which
 * tenant, with which role, and the request's tenant-scoped database handle.
 */

export interface RequestState {
  requestId: string;
  tenantId?: string;
  rateLimit?: RateLimitState;
  operationName?: string;
}

export interface Actor {
  type: "USER" | "API_KEY";
  id: string;
  label: string;
}

export interface ContextDeps {
  app: PrismaClient;
  platform: PrismaClient;
  store: Store;
  directory: Directory;
  verifyToken: TokenVerifier;
  baseDomain?: string;
}

export interface Context {
  requestId: string;
  ip: string | null;
  user: UserInfo | null;
  apiKey: ApiKeyInfo | null;
  actor: Actor | null;
  tenant: TenantInfo | null;
  role: Role | null;
  membershipId: string | null;
  isPlatformAdmin: boolean;
  /** Set when execution starts; mutations write in short transactions of their own. */
  operation: "query" | "mutation" | "subscription";
  /** The tenant-scoped handle; throws TENANT_REQUIRED when there is no tenant. */
  readonly db: ScopedTx;
  readonly tenantDb: TenantDb;
  /** Per-request memo (DataLoaders), keyed by name. */
  loaders: Map<string, unknown>;
  deps: ContextDeps;
  /** Ends the request's read transaction, if one was opened. */
  finish(): Promise<void>;
}

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestIdFrom(request: Request): string {
  const incoming = request.headers.get("x-request-id");
  return incoming && REQUEST_ID_RE.test(incoming) ? incoming : randomUUID();
}

function subdomainTenant(host: string | null, baseDomain?: string): string | undefined {
  if (!host || !baseDomain) return undefined;
  const hostname = host.replace(/:\d+$/, "").toLowerCase();
  if (!hostname.endsWith(`.${baseDomain}`)) return undefined;
  const sub = hostname.slice(0, -baseDomain.length - 1);
  return sub && !sub.includes(".") ? sub : undefined;
}

/** Collects the tenant references of a request, in SPEC order. */
function tenantReferences(request: Request, tid: string | undefined, baseDomain?: string) {
  return [tid, request.headers.get("x-tenant-id")?.trim() || undefined, subdomainTenant(request.headers.get("host"), baseDomain)].filter(
    (r): r is string => !!r,
  );
}

async function resolveTenant(directory: Directory, refs: string[]): Promise<TenantInfo | null> {
  if (refs.length === 0) return null;
  const tenants = await Promise.all(refs.map((r) => directory.tenant(r)));
  // Unknown tenants and tenants the caller cannot enter look the same.
  if (tenants.some((t) => t === null)) throw tenantAccessDenied("Unknown tenant or not a member");
  const first = tenants[0]!;
  if (tenants.some((t) => t!.id !== first.id)) {
    throw tenantAccessDenied("Conflicting tenant in token, X-Tenant-ID and host");
  }
  return first;
}

function checkActive(tenant: TenantInfo) {
  if (tenant.status !== "ACTIVE") throw tenantSuspended(tenant.status);
}

export async function buildContext(
  deps: ContextDeps,
  request: Request,
  state: RequestState,
  opts: { ip: string | null },
): Promise<Context> {
  const { directory } = deps;
  let user: UserInfo | null = null;
  let apiKey: ApiKeyInfo | null = null;
  let tenant: TenantInfo | null = null;
  let role: Role | null = null;
  let membershipId: string | null = null;
  let actor: Actor | null = null;

  const authorization = request.headers.get("authorization");
  const keySecret = request.headers.get("x-api-key");
  if (authorization && keySecret) throw unauthenticated("Send either a bearer token or an API key, not both", 400);

  if (authorization) {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!match) throw unauthenticated("Malformed Authorization header");
    const token = await deps.verifyToken(match[1]!);
    user = await directory.userBySubject(token.sub);
    if (!user) throw unauthenticated("Unknown subject");
    actor = { type: "USER", id: user.id, label: user.email };
    tenant = await resolveTenant(directory, tenantReferences(request, token.tid, deps.baseDomain));
    if (tenant) {
      const membership = await directory.membership(tenant.id, user.id);
      if (!membership) throw tenantAccessDenied();
      checkActive(tenant);
      role = membership.role;
      membershipId = membership.id;
    }
  } else if (keySecret) {
    apiKey = await directory.apiKey(keySecret.trim());
    const now = Date.now();
    if (
      !apiKey ||
      apiKey.revokedAt ||
      (apiKey.expiresAt && Date.parse(apiKey.expiresAt) <= now) ||
      (apiKey.graceUntil && Date.parse(apiKey.graceUntil) <= now)
    ) {
      throw unauthenticated("Invalid, expired or revoked API key");
    }
    actor = { type: "API_KEY", id: apiKey.id, label: `key:${apiKey.prefix}` };
    tenant = await directory.tenant(apiKey.tenantId);
    if (!tenant) throw unauthenticated("Invalid, expired or revoked API key");
    const others = await resolveTenant(directory, tenantReferences(request, undefined, deps.baseDomain));
    if (others && others.id !== tenant.id) throw tenantAccessDenied("This API key belongs to another tenant");
    checkActive(tenant);
    role = apiKey.role;
  }

  if (tenant) {
    state.tenantId = tenant.id;
    try {
      state.rateLimit = await consumeRequest(deps.store, tenant.id, tenant.limits.API_REQUESTS_PER_MINUTE);
    } catch (err) {
      if (err instanceof AppError && "rateLimit" in err) state.rateLimit = (err as any).rateLimit;
      throw err;
    }
  }

  let tenantDb: TenantDb | undefined;
  const currentTenant = tenant;
  const ctx: Context = {
    requestId: state.requestId,
    ip: opts.ip,
    user,
    apiKey,
    actor,
    tenant,
    role,
    membershipId,
    isPlatformAdmin: !!user?.isPlatformAdmin,
    operation: "query",
    get tenantDb() {
      if (!currentTenant) throw tenantRequired();
      tenantDb ??= new TenantDb(deps.app, {
        tenantId: currentTenant.id,
        userId: user?.id ?? null,
        statementTimeoutMs: PLAN_STATEMENT_TIMEOUT_MS[currentTenant.plan],
        mode: this.operation === "mutation" ? "statement" : "request",
      });
      return tenantDb;
    },
    get db() {
      return this.tenantDb.client;
    },
    loaders: new Map(),
    deps,
    finish: async () => {
      await tenantDb?.finish();
    },
  };
  return ctx;
}

export function requireTenant(ctx: Context): TenantInfo {
  if (!ctx.tenant) {
    if (!ctx.actor) throw new AppError("UNAUTHENTICATED", "Authentication required");
    if (ctx.isPlatformAdmin && !ctx.role) throw forbidden("Platform admins reach tenant data through platform fields only");
    throw tenantRequired();
  }
  return ctx.tenant;
}

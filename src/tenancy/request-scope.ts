import { tenantRequired } from "../errors.ts";
import type { ContextDeps, Context, TenantDbHandle } from "./context-types.ts";
import { needsSavepoints } from "./mutation-changes.ts";
import { PLAN_STATEMENT_TIMEOUT_MS } from "./plans.ts";
import { placedDirectorySync } from "./placement-directory.ts";
import type { ScopedTx } from "./scoped-client.ts";
import { TenantDb } from "./tenant-db.ts";

/** The secret hash of a request's API key (its authorization facts are read by it), per context. */
const apiKeyHashes = new WeakMap<Context, string | null>();
/** The app's dependencies, per context: kept off the object the resolvers see. */
const depsOf = new WeakMap<Context, ContextDeps>();

/**
 * Keeps what the context's scope is made of, off the context object, and
 * defines its scope's accessors (buildContext, once per context; renewScope
 * then gives them a fresh scope).
 */
export function bindScope(ctx: Context, deps: ContextDeps, apiKeyHash: string | null): void {
  depsOf.set(ctx, deps);
  apiKeyHashes.set(ctx, apiKeyHash);
  Object.defineProperties(ctx, SCOPE_ACCESSORS);
}

/** The SHA-256 of the API-key secret the request was made with (a stream keeps it: its re-checks judge that secret); null without one. */
export const apiKeyHashOf = (ctx: Context): string | null => apiKeyHashes.get(ctx) ?? null;

/** TenantDb's request-facing methods, bound: the object holds no client (its `client` is the tenant-scoped handle). */
export function tenantDbHandle(db: TenantDb): TenantDbHandle {
  return Object.freeze({
    client: db.client,
    tenantId: db.tenantId,
    transaction: <T>(fn: (tx: ScopedTx) => Promise<T>) => db.transaction(fn),
    run: <T>(fn: (tx: ScopedTx) => Promise<T>) => db.run(fn),
    queryRaw: <T>(sql: Parameters<TenantDb["queryRaw"]>[0], options?: Parameters<TenantDb["queryRaw"]>[1]) => db.queryRaw<T>(sql, options),
    afterCommit: (hook: () => Promise<unknown>) => db.afterCommit(hook),
    afterRollback: (hook: () => Promise<unknown>) => db.afterRollback(hook),
    authorize: () => db.authorize(),
    readWithFacts: <T>(...args: Parameters<TenantDb["readWithFacts"]>) => db.readWithFacts<T>(...args),
    setStatementTimeout: (ms: number) => db.setStatementTimeout(ms),
    finish: () => db.finish(),
    statements: () => tenantDbHandle(db.statements()),
  });
}

/** A context's current scope: its lazy tenant-scoped handle, made on first use (renewScope starts a new one). */
const scopes = new WeakMap<Context, { tenantDb?: TenantDbHandle }>();

/**
 * (Re)creates the request's memo (loaders) and its lazy tenant-scoped
 * handle. A request gets them once; a subscription renews them for every
 * event, so each event is read in a transaction of its own with nothing
 * remembered from the one before.
 *
 * Yoga merges the context with Object.assign, which would call enumerable
 * getters at build time (throwing TENANT_REQUIRED for tenant-less calls and
 * fixing the transaction mode before the operation is known). So the lazy
 * handles are non-enumerable accessors, defined on Yoga's own context object
 * when given, which is the object the resolvers receive. They are defined
 * once per context (bindScope) with the same getter functions for every context (the
 * scope they read is kept apart): accessors made anew per context, or
 * defined again on the same one, turn the object into a dictionary (a hash
 * lookup for each of the resolvers' ctx reads, and 1.6 KB per context, which
 * an open stream keeps; docs/live-updates.md, "Ninth round, second part").
 */
export function renewScope(ctx: Context): void {
  const scope: { tenantDb?: TenantDbHandle } = {};
  scopes.set(ctx, scope);
  ctx.loaders = new Map<string, unknown>();
  ctx.finish = async () => {
    await scope.tenantDb?.finish();
  };
}

function tenantDbOf(this: Context): TenantDbHandle {
  const scope = scopes.get(this);
  const deps = depsOf.get(this);
  if (!scope || !deps) throw new Error("tenantDb: a context without its scope (renewScope)");
  const tenant = this.tenant;
  if (!tenant) throw tenantRequired();
  // A subscription's reads (nested fields of an event's node) run on the
  // live pool, never on the request tiers (docs/live-updates.md).
  const subscription = this.operation === "subscription";
  scope.tenantDb ??= tenantDbHandle(new TenantDb(subscription ? (deps.liveDb ?? deps.app) : deps.app, {
    tenantId: tenant.id,
    plan: subscription ? undefined : tenant.plan,
    placement: tenant.placement,
    userId: this.user?.id ?? null,
    apiKeyId: this.apiKey?.id ?? null,
    tenantScope: deps.tenantScope,
    statementTimeoutMs: PLAN_STATEMENT_TIMEOUT_MS[tenant.plan],
    mode: this.operation === "mutation" ? "mutation" : "request",
    // A subscription's reads are the hub's, for every stream at once: no one request's client.
    signal: subscription ? undefined : (this as { request?: Request }).request?.signal,
    savepoints: needsSavepoints(this),
    // A subscription's access is re-read for every event by the hub (for all its streams at once).
    authorization: subscription ? undefined : { apiKeyHash: apiKeyHashes.get(this) ?? null, cache: !!deps.responseCache && this.operation === "query" },
    publisher: deps.live,
    onCommitted: this.operation === "mutation" ? placedDirectorySync(deps.app, deps.directory, tenant) : undefined,
  }));
  return scope.tenantDb;
}

function dbOf(this: Context): ScopedTx {
  return this.operation === "subscription" ? eventClient(this) : this.tenantDb.client;
}

const SCOPE_ACCESSORS: PropertyDescriptorMap = {
  tenantDb: { enumerable: false, configurable: true, get: tenantDbOf },
  db: { enumerable: false, configurable: true, get: dbOf },
};

const eventClients = new WeakMap<Context, ScopedTx>();

/**
 * A subscription's `db`: one handle for the stream's whole life that sends
 * every call to the current event's transaction (Pothos keeps the handle it
 * first saw for as long as the context lives).
 */
function eventClient(ctx: Context): ScopedTx {
  let client = eventClients.get(ctx);
  if (client) return client;
  // `any`: the proxy calls `$` methods and model delegates by name, which no Prisma type describes.
  const current = () => ctx.tenantDb.client as unknown as Record<string, any>;
  const delegates = new Map<string, unknown>();
  client = new Proxy({} as ScopedTx, {
    has: (_, key) => key in current(),
    get: (_, key) => {
      if (typeof key !== "string" || key === "then") return undefined;
      if (key.startsWith("$")) return (...args: unknown[]) => current()[key](...args);
      let delegate = delegates.get(key);
      if (!delegate) {
        delegate = new Proxy({}, { get: (__, op) => (typeof op === "string" ? (...args: unknown[]) => current()[key][op](...args) : undefined) });
        delegates.set(key, delegate);
      }
      return delegate;
    },
  });
  eventClients.set(ctx, client);
  return client;
}

import type { PrismaClient } from "../generated/prisma/client.ts";
import { Prisma } from "../generated/prisma/client.ts";
import { tenantScope, type TenantScope } from "./tenant-scope.ts";

/**
 * The one tenant-scoped database handle of a request.
 *
 * Both walls meet here: every query goes through the tenant-scope extension
 * (wall 1) and runs inside a transaction whose first statement sets the
 * transaction-local `app.tenant_id` that the RLS policies read (wall 2).
 *
 * Request-path design (docs/request-path.md): a query operation opens ONE
 * read transaction lazily, on its first database access, and every resolver
 * of the request shares it: BEGIN + one set_config + the queries + COMMIT.
 * Mutations instead run each change in its own short transaction together
 * with its audit entry (`transaction()`); their reads use one transaction per
 * statement, so a mutation never holds one pooled connection while waiting
 * for another.
 */

export type ScopedClient = ReturnType<typeof scopedClient>;
export type ScopedTx = Omit<ScopedClient, "$connect" | "$disconnect" | "$on" | "$transaction" | "$extends">;

export function scopedClient(base: PrismaClient, scope: TenantScope) {
  return base.$extends(tenantScope(scope));
}

export interface TenantDbOptions {
  tenantId: string;
  userId?: string | null;
  /** 0 = no limit. */
  statementTimeoutMs: number;
  /** "request": one shared read transaction; "statement": one per query. */
  mode: "request" | "statement";
  /** Upper bound of one request transaction. */
  transactionTimeoutMs?: number;
}

export class TenantDb {
  readonly client: ScopedTx;
  readonly tenantId: string;
  private readonly scoped: ScopedClient;
  private tx: Promise<ScopedTx> | undefined;
  private release: (() => void) | undefined;
  private settled: Promise<unknown> | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    base: PrismaClient,
    private readonly options: TenantDbOptions,
  ) {
    this.tenantId = options.tenantId;
    this.scoped = scopedClient(base, { tenantId: options.tenantId, userId: options.userId });
    this.client = this.lazyClient();
  }

  /** The statement that opens every tenant transaction: one round-trip. */
  private applySettings(tx: ScopedTx) {
    const { tenantId, userId, statementTimeoutMs } = this.options;
    return tx.$executeRaw`SELECT set_config('app.tenant_id', ${tenantId}, true),
      set_config('app.user_id', ${userId ?? ""}, true),
      set_config('statement_timeout', ${String(statementTimeoutMs)}, true)`;
  }

  /** Runs `fn` in its own transaction (a mutation and its audit entry). */
  transaction<T>(fn: (tx: ScopedTx) => Promise<T>): Promise<T> {
    return this.scoped.$transaction(
      async (tx) => {
        await this.applySettings(tx as ScopedTx);
        return fn(tx as ScopedTx);
      },
      { maxWait: 5_000, timeout: this.options.transactionTimeoutMs ?? 60_000 },
    );
  }

  /** Raw SQL inside the scope. Raw SQL bypasses wall 1: always filter tenant_id. */
  queryRaw<T>(sql: Prisma.Sql): Promise<T[]> {
    return this.run((tx) => tx.$queryRaw<T[]>(sql));
  }

  /** Runs one database call inside the request's scope. */
  run<T>(fn: (tx: ScopedTx) => Promise<T>): Promise<T> {
    if (this.options.mode === "statement") return this.transaction(fn);
    // One connection serves the whole request: queue the statements on it
    // rather than handing pg concurrent queries on one client.
    const result = this.queue.then(() => this.requestTx()).then(fn);
    this.queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  private requestTx(): Promise<ScopedTx> {
    this.tx ??= new Promise<ScopedTx>((resolveTx, rejectTx) => {
      this.settled = this.scoped
        .$transaction(
          async (tx) => {
            await this.applySettings(tx as ScopedTx);
            resolveTx(tx as ScopedTx);
            await new Promise<void>((resolve) => (this.release = resolve));
          },
          { maxWait: 5_000, timeout: this.options.transactionTimeoutMs ?? 60_000 },
        )
        .catch((err: unknown) => rejectTx(err));
    });
    return this.tx;
  }

  /** Ends the request transaction (read-only: commit and rollback are alike). */
  async finish(): Promise<void> {
    if (!this.tx) return;
    this.release?.();
    await this.settled;
  }

  /**
   * A client whose model delegates are available synchronously (Pothos and
   * services call `db.project.findMany(...)`), opening the transaction on
   * first use.
   */
  private lazyClient(): ScopedTx {
    const cache = new Map<string, unknown>();
    const call = (path: string[], args: unknown[]) =>
      this.run((tx) => {
        let target: any = tx;
        for (const p of path.slice(0, -1)) target = target[p];
        return target[path[path.length - 1]!](...args);
      });
    return new Proxy({} as ScopedTx, {
      // Pothos finds model delegates with `"project" in client` (node/nodes).
      has: (_, key) => typeof key === "string" && key !== "then" && (key.startsWith("$") || key in this.scoped),
      get: (_, key) => {
        if (typeof key !== "string") return undefined;
        if (key === "then") return undefined;
        if (key.startsWith("$")) return (...args: unknown[]) => call([key], args);
        let delegate = cache.get(key);
        if (!delegate) {
          delegate = new Proxy(
            {},
            {
              get: (__, op) =>
                typeof op === "string" ? (...args: unknown[]) => call([key, op], args) : undefined,
            },
          );
          cache.set(key, delegate);
        }
        return delegate;
      },
    });
  }
}

import type { ScopedTx } from "./scoped-client.ts";

/** A Prisma method reached by its path of names (delegate, operation): no Prisma type describes it. */
type Methods = Record<string, (...args: unknown[]) => Promise<unknown>>;

/**
 * A client whose model delegates are available synchronously (Pothos and
 * services call `db.project.findMany(...)`), each call made through `run`
 * (which opens the request's transaction on first use). `hasModel`: whether
 * a name is a model delegate of the client behind it.
 */
export function lazyClient(run: <T>(fn: (tx: ScopedTx) => Promise<T>) => Promise<T>, hasModel: (key: string) => boolean): ScopedTx {
  const cache = new Map<string, unknown>();
  const call = (path: string[], args: unknown[]) =>
    run((tx) => {
      let owner = tx as unknown as Record<string, unknown>;
      for (const p of path.slice(0, -1)) owner = owner[p] as Record<string, unknown>;
      return (owner as Methods)[path[path.length - 1]!]!(...args);
    });
  return new Proxy({} as ScopedTx, {
    // Pothos finds model delegates with `"project" in client` (node/nodes).
    has: (_, key) => typeof key === "string" && key !== "then" && (key.startsWith("$") || hasModel(key)),
    get: (_, key) => {
      if (typeof key !== "string") return undefined;
      if (key === "then") return undefined;
      if (key.startsWith("$")) return (...args: unknown[]) => call([key], args);
      let delegate = cache.get(key);
      if (!delegate) {
        delegate = new Proxy(
          {},
          {
            get: (__, op) => (typeof op === "string" ? (...args: unknown[]) => call([key, op], args) : undefined),
          },
        );
        cache.set(key, delegate);
      }
      return delegate;
    },
  });
}

import { randomBytes } from "node:crypto";
import { createApp } from "../../src/app.ts";
import { RedisStore, type Admission, type Store } from "../../src/infra/store.ts";
import { MemoryStore } from "../../src/infra/memory-store.ts";
import { testRedisTarget } from "./redis-cluster.ts";
import { testAppDeps, type TestApp } from "./app.ts";
import { createTestClients } from "./db.ts";

/**
 * Replicas: stores that share one namespace of the real Redis through
 * separate connections (as two server processes would), and a second app
 * over the same database with its own connections, directory and store.
 * Without REDIS_URL the replicas share one in-process store (the single
 * instance the in-process store supports).
 */
export function sharedStores(count: number): Store[] {
  const target = testRedisTarget();
  if (!target) {
    const one = new MemoryStore();
    return Array.from({ length: count }, () => one);
  }
  const prefix = `test:${randomBytes(6).toString("hex")}:`;
  return Array.from({ length: count }, () => {
    const inner = new RedisStore(target);
    const k = (key: string) => prefix + key;
    return {
      kind: "redis" as const,
      get: (key: string) => inner.get(k(key)),
      set: (key: string, value: string, ttl: number) => inner.set(k(key), value, ttl),
      del: (...keys: string[]) => inner.del(...keys.map(k)),
      hit: (key: string, windowMs: number, by?: number) => inner.hit(k(key), windowMs, by),
      readAndHit: (keys: string[], admit: Admission[], counter: { key: string; windowMs: number }) => inner.readAndHit(keys.map(k), admit, { ...counter, key: k(counter.key) }),
      deletePattern: (pattern: string) => inner.deletePattern(k(pattern)),
      ping: () => inner.ping(),
      async close() {
        await inner.deletePattern(`${prefix}*`).catch(() => 0);
        await inner.close();
      },
    };
  });
}

export type Gql = TestApp["gql"];

/** A second app over the database of `t`, with its own connections and directory (and the clock given, e.g. the test app's). */
export function createReplica(t: TestApp, store: Store, opts: { clock?: () => number } = {}): { gql: Gql; close(): Promise<void> } {
  const clients = createTestClients(t.db.url);
  const app = createApp(testAppDeps(clients, store, { config: { graphiql: false }, clock: opts.clock }));
  return {
    async gql(query, opts = {}) {
      const headers: Record<string, string> = { "content-type": "application/json", ...opts.headers };
      if (opts.token) headers.authorization = `Bearer ${opts.token}`;
      const res = await app.fetch("http://localhost/graphql", { method: "POST", headers, body: JSON.stringify({ query, variables: opts.variables }) });
      return { status: res.status, headers: res.headers, body: JSON.parse(await res.text()) };
    },
    close: () => clients.close(),
  };
}

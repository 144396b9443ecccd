import { randomBytes } from "node:crypto";
import { RedisStore, type Admission, type Store } from "../../src/infra/store.ts";
import { MemoryStore } from "../../src/infra/memory-store.ts";
import { testRedisTarget } from "./redis-cluster.ts";

/**
 * A store of one's own for one test app. Every test file seeds the demo
 * tenants into its own database, with fresh ids, but the real Redis is shared
 * by all of them: unprefixed, `tslug:acme` cached by one file would send the
 * next file's requests to a tenant id that does not exist in its database.
 * With REDIS_URL (or REDIS_CLUSTER_NODES): the real Redis, every key under a random prefix; else an
 * in-process store.
 */
export function isolatedStore(): Store {
  const target = testRedisTarget();
  if (!target) return new MemoryStore();
  const inner = new RedisStore(target);
  const prefix = `test:${randomBytes(6).toString("hex")}:`;
  const k = (key: string) => prefix + key;
  return {
    kind: "redis",
    get: (key) => inner.get(k(key)),
    set: (key, value, ttl) => inner.set(k(key), value, ttl),
    del: (...keys) => inner.del(...keys.map(k)),
    hit: (key, windowMs, by) => inner.hit(k(key), windowMs, by),
    readAndHit: (keys: string[], admit: Admission[], counter: { key: string; windowMs: number }) => inner.readAndHit(keys.map(k), admit, { ...counter, key: k(counter.key) }),
    deletePattern: (pattern) => inner.deletePattern(k(pattern)),
    ping: () => inner.ping(),
    async close() {
      await inner.deletePattern(`${prefix}*`).catch(() => 0);
      await inner.close();
    },
  };
}

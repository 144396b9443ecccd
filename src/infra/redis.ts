import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { RedisTarget } from "../config.ts";

/**
 * Every Redis connection of the server is made here: one server
 * (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER_NODES), same options.
 *
 * On a cluster a command, a Lua script, a pipeline or a MULTI may only name
 * keys of one slot. Every key of a tenant carries its id as a hash tag,
 * `t:{<tenantId>}:...` (`tenantKey` in ./store.ts), so one tenant's keys all
 * hash to one slot; a command over several keys either names keys of one
 * tenant only or is split by hash tag (`byHashTag`). test/unit/redis-keys.test.ts
 * and test/integration/redis-cluster.test.ts check both (docs/scale-out.md).
 *
 * REDIS_KEY_PREFIX (`keyPrefix`): every key and channel of the server is
 * under it, so two deployments can share one Redis (docs/scale-out.md,
 * "Sharing one Redis"). ioredis prefixes the keys of every command and the
 * KEYS of Lua scripts itself; not SCAN's MATCH pattern nor the keys SCAN
 * returns (RedisStore.deletePattern adds and strips it), nor pub/sub channels
 * (src/modules/live/bus.ts prefixes its topics). The prefix has no braces, so
 * a tenant's `{<tenantId>}` stays the hash tag that decides the slot.
 */
export type RedisClient = Redis | Cluster;

/** The options of ./store.ts and src/modules/live that have a meaning on both kinds. */
export interface RedisConnectOptions {
  commandTimeout?: number;
  connectTimeout?: number;
  maxRetriesPerRequest?: number | null;
  retryStrategy?: (times: number) => number | null;
  enableAutoPipelining?: boolean;
  lazyConnect?: boolean;
  /** REDIS_KEY_PREFIX: put before every key of a command (ioredis' `keyPrefix`); "" for none. */
  keyPrefix?: string;
}

export function connectRedis(target: RedisTarget, options: RedisConnectOptions = {}): RedisClient {
  const { keyPrefix = "", ...rest } = options;
  if (typeof target === "string") return new Redis(target, { ...rest, keyPrefix });
  const { retryStrategy, enableAutoPipelining, lazyConnect, ...perNode } = rest;
  const auth = target.find((n) => n.password || n.username || n.tls);
  const redisOptions: RedisOptions = {
    ...perNode,
    ...(auth?.username ? { username: auth.username } : {}),
    ...(auth?.password ? { password: auth.password } : {}),
    ...(auth?.tls ? { tls: {} } : {}),
  };
  return new Cluster(
    target.map(({ host, port }) => ({ host, port })),
    {
      redisOptions,
      clusterRetryStrategy: retryStrategy,
      enableAutoPipelining,
      lazyConnect,
      // On the cluster client, not on its node connections: commands are
      // prefixed once, when made, and their slot is computed on the prefixed key.
      keyPrefix,
      // A slot map older than a failover or a resharding is refreshed on the MOVED answer.
      slotsRefreshTimeout: options.connectTimeout ?? 2000,
    },
  );
}

export const isCluster = (client: RedisClient): client is Cluster => client instanceof Cluster;

/** The nodes to SCAN for a pattern: every master of a cluster, or the one server. */
export const scanNodes = (client: RedisClient): Redis[] => (isCluster(client) ? client.nodes("master") : [client]);

/**
 * The hash tag Redis Cluster hashes a key by: the text between the first `{`
 * and the next `}` when not empty, else the whole key.
 */
export function hashTag(key: string): string {
  const open = key.indexOf("{");
  if (open < 0) return key;
  const close = key.indexOf("}", open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/** Keys grouped so that each group hashes to one cluster slot (same hash tag). */
export function byHashTag(keys: readonly string[]): string[][] {
  const groups = new Map<string, string[]>();
  for (const key of keys) {
    const tag = hashTag(key);
    const group = groups.get(tag);
    if (group) group.push(key);
    else groups.set(tag, [key]);
  }
  return [...groups.values()];
}

import { Redis } from "ioredis";

/**
 * The shared key-value store: Redis when REDIS_URL is set, else an in-process
 * map (one instance only). Tenant keys are `t:{<tenantId>}:...`: the braces
 * keep one tenant's keys in one Redis Cluster slot, and let purge find them.
 */
export interface Store {
  readonly kind: "redis" | "memory";
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlSeconds: number): Promise<void>;
  del(...keys: string[]): Promise<void>;
  /** Fixed-window counter: adds `by` and returns the new count and the window's reset time (ms epoch). */
  hit(key: string, windowMs: number, by?: number): Promise<{ count: number; resetAt: number }>;
  /** Deletes every key matching a glob pattern (SCAN, never KEYS). */
  deletePattern(pattern: string): Promise<number>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export const tenantKey = (tenantId: string, ...parts: string[]) => `t:{${tenantId}}:${parts.join(":")}`;

// INCRBY and PEXPIRE in one atomic step, so that replicas sharing one Redis
// agree on the count and a crash cannot leave a counter without expiry.
const HIT_SCRIPT = `
local c = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {c, ttl}`;

export class RedisStore implements Store {
  readonly kind = "redis" as const;
  readonly redis: Redis;

  constructor(url: string) {
    this.redis = new Redis(url, { maxRetriesPerRequest: 2, enableAutoPipelining: true, lazyConnect: false });
    this.redis.defineCommand("tgHit", { numberOfKeys: 1, lua: HIT_SCRIPT });
  }

  get(key: string) {
    return this.redis.get(key);
  }
  async set(key: string, value: string, ttlSeconds: number) {
    await this.redis.set(key, value, "EX", ttlSeconds);
  }
  async del(...keys: string[]) {
    if (keys.length) await this.redis.del(...keys);
  }
  async hit(key: string, windowMs: number, by = 1) {
    const [count, ttl] = (await (this.redis as any).tgHit(key, windowMs, by)) as [number, number];
    return { count, resetAt: Date.now() + ttl };
  }
  async deletePattern(pattern: string) {
    let cursor = "0";
    let deleted = 0;
    do {
      const [next, keys] = await this.redis.scan(cursor, "MATCH", pattern, "COUNT", 500);
      cursor = next;
      if (keys.length) deleted += await this.redis.unlink(...keys);
    } while (cursor !== "0");
    return deleted;
  }
  async ping() {
    try {
      return (await this.redis.ping()) === "PONG";
    } catch {
      return false;
    }
  }
  async close() {
    this.redis.disconnect();
  }
}

export class MemoryStore implements Store {
  readonly kind = "memory" as const;
  private readonly data = new Map<string, { value: string; expiresAt: number }>();

  private live(key: string) {
    const entry = this.data.get(key);
    if (entry && entry.expiresAt <= Date.now()) {
      this.data.delete(key);
      return undefined;
    }
    return entry;
  }
  async get(key: string) {
    return this.live(key)?.value ?? null;
  }
  async set(key: string, value: string, ttlSeconds: number) {
    this.data.set(key, { value, expiresAt: Date.now() + ttlSeconds * 1000 });
  }
  async del(...keys: string[]) {
    for (const k of keys) this.data.delete(k);
  }
  async hit(key: string, windowMs: number, by = 1) {
    const entry = this.live(key) ?? { value: "0", expiresAt: Date.now() + windowMs };
    entry.value = String(Number(entry.value) + by);
    this.data.set(key, entry);
    return { count: Number(entry.value), resetAt: entry.expiresAt };
  }
  async deletePattern(pattern: string) {
    const re = new RegExp(
      "^" + pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$",
    );
    let n = 0;
    for (const key of [...this.data.keys()]) if (re.test(key) && this.data.delete(key)) n++;
    return n;
  }
  async ping() {
    return true;
  }
  async close() {
    this.data.clear();
  }
}

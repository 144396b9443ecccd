import type { ClientContext, Result } from "ioredis";
import type { RedisClient } from "../../infra/redis.ts";
import { tenantKey } from "../../infra/store.ts";

/**
 * Concurrent streams per tenant, counted across replicas (QuotaResource
 * SUBSCRIPTIONS). Each open stream holds a lease in a sorted set of its
 * tenant, `t:{<tenantId>}:live:streams`, scored by the lease's expiry; the
 * replica that holds the stream renews it while it is open and removes it
 * when it closes. A replica that dies without closing its streams frees
 * their slots when the leases expire (LEASE_MS), not never.
 *
 * Acquiring is one script: expired leases out, count, add if under the
 * limit, so concurrent subscribes on several replicas cannot overshoot.
 */
export interface StreamSlots {
  /** Takes a slot under `limit` (null = unlimited); `used` is the count before this one. */
  acquire(tenantId: string, streamId: string, limit: number | null): Promise<{ ok: boolean; used: number }>;
  release(tenantId: string, streamId: string): Promise<void>;
  /** Extends the leases of streams still open. */
  renew(streams: { tenantId: string; streamId: string }[]): Promise<void>;
  count(tenantId: string): Promise<number>;
}

export const slotsKey = (tenantId: string) => tenantKey(tenantId, "live", "streams");

const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[2])
if limit >= 0 and n >= limit then return {0, n} end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, n}`;

declare module "ioredis" {
  interface RedisCommander<Context extends ClientContext> {
    /** ACQUIRE: [1 if acquired else 0, streams held before]. */
    tgLiveAcquire(key: string, now: number, limit: number, expiresAt: number, streamId: string, ttlMs: number): Result<[number, number], Context>;
  }
}

export class RedisStreamSlots implements StreamSlots {
  constructor(
    private readonly redis: RedisClient,
    private readonly leaseMs: number,
  ) {
    redis.defineCommand("tgLiveAcquire", { numberOfKeys: 1, lua: ACQUIRE });
  }

  async acquire(tenantId: string, streamId: string, limit: number | null) {
    const now = Date.now();
    const [ok, used] = await this.redis.tgLiveAcquire(slotsKey(tenantId), now, limit ?? -1, now + this.leaseMs, streamId, this.leaseMs * 2);
    return { ok: ok === 1, used };
  }
  async release(tenantId: string, streamId: string) {
    await this.redis.zrem(slotsKey(tenantId), streamId);
  }
  async renew(streams: { tenantId: string; streamId: string }[]) {
    if (!streams.length) return;
    const expiry = Date.now() + this.leaseMs;
    // One ZADD per tenant for all its streams (one per stream made 1,100
    // commands a renewal for 1,000 streams, 7% of the live load's CPU); a
    // pipeline per tenant: a Redis Cluster takes one only within one slot,
    // and one tenant's keys share one (src/infra/redis.ts).
    const byTenant = new Map<string, (number | string)[]>();
    for (const s of streams) {
      const members = byTenant.get(s.tenantId) ?? [];
      members.push(expiry, s.streamId);
      byTenant.set(s.tenantId, members);
    }
    await Promise.all(
      [...byTenant].map(([tenantId, members]) =>
        this.redis.pipeline().zadd(slotsKey(tenantId), "XX", ...members).pexpire(slotsKey(tenantId), this.leaseMs * 2).exec(),
      ),
    );
  }
  async count(tenantId: string) {
    return this.redis.zcount(slotsKey(tenantId), Date.now(), "+inf");
  }
}

/** One process (no REDIS_URL): the same leases in memory. */
export class MemoryStreamSlots implements StreamSlots {
  private readonly leases = new Map<string, Map<string, number>>();
  constructor(private readonly leaseMs: number) {}

  private live(tenantId: string) {
    const now = Date.now();
    const m = this.leases.get(tenantId) ?? new Map<string, number>();
    for (const [id, until] of m) if (until <= now) m.delete(id);
    this.leases.set(tenantId, m);
    return m;
  }
  async acquire(tenantId: string, streamId: string, limit: number | null) {
    const m = this.live(tenantId);
    const used = m.size;
    if (limit !== null && used >= limit) return { ok: false, used };
    m.set(streamId, Date.now() + this.leaseMs);
    return { ok: true, used };
  }
  async release(tenantId: string, streamId: string) {
    this.leases.get(tenantId)?.delete(streamId);
  }
  async renew(streams: { tenantId: string; streamId: string }[]) {
    const until = Date.now() + this.leaseMs;
    for (const s of streams) {
      const m = this.leases.get(s.tenantId);
      if (m?.has(s.streamId)) m.set(s.streamId, until);
    }
  }
  async count(tenantId: string) {
    return this.live(tenantId).size;
  }
}

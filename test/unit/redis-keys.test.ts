import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { byHashTag, hashTag } from "../../src/infra/redis.ts";
import { requestCounterKey } from "../../src/infra/request-counter.ts";
import { responseCacheKey, responseCachePattern } from "../../src/infra/response-cache.ts";
import { tenantKey } from "../../src/infra/store.ts";
import { slotsKey } from "../../src/modules/live/stream-slots.ts";
import { rateLimitWindowKey } from "../../src/infra/rate-limit.ts";
import { quotaWindowKey } from "../../src/policy/quota.ts";

/**
 * Redis Cluster (docs/scale-out.md): a command, script, pipeline or MULTI
 * may only touch one slot. Every tenant key builder carries the tenant id as
 * its hash tag, and every multi-key call site of src/ is one of those
 * reviewed below. test/integration/redis-cluster.test.ts runs them on a real
 * 3-master cluster.
 */
describe("Redis keys and Cluster slots", () => {
  it("hashTag follows Redis Cluster's rule (first {...}, not empty)", () => {
    expect(hashTag("t:{abc}:info")).toBe("abc");
    expect(hashTag("test:12:t:{abc}:rl:1")).toBe("abc");
    expect(hashTag("t:{abc}:{def}")).toBe("abc");
    expect(hashTag("tslug:acme")).toBe("tslug:acme");
    expect(hashTag("a{}b{c}")).toBe("a{}b{c}");
    expect(hashTag("a{b")).toBe("a{b");
  });

  it("byHashTag groups keys of one slot together and nothing else", () => {
    const [a, b] = [randomUUID(), randomUUID()];
    const groups = byHashTag([tenantKey(a, "info"), `tslug:x`, tenantKey(b, "info"), tenantKey(a, "m", "u1"), `ak:h`]);
    expect(groups).toEqual([[tenantKey(a, "info"), tenantKey(a, "m", "u1")], ["tslug:x"], [tenantKey(b, "info")], ["ak:h"]]);
  });

  it("every tenant key builder hashes by the tenant id alone", () => {
    const id = randomUUID();
    const builders: [string, string][] = [
      ["tenantKey", tenantKey(id, "info")],
      ["quotaWindowKey", quotaWindowKey(id, "WORKFLOWS_PER_HOUR", 0)],
      ["rateLimitWindowKey", rateLimitWindowKey(id, 0)],
      ["requestCounterKey", requestCounterKey(id, 5)],
      ["responseCacheKey", responseCacheKey(id, ["q", "op", "{\"a\":{\"b\":1}}", "", "caller"])],
      ["responseCachePattern", responseCachePattern(id)],
      ["slotsKey", slotsKey(id)],
    ];
    for (const [name, key] of builders) expect(hashTag(key), name).toBe(id);
  });

  /**
   * Every call in src/ that can name several keys, or batch commands, is
   * listed here with why it stays in one slot. A new one fails this test
   * until it is reviewed (and covered on the cluster).
   */
  const REVIEWED: Record<string, string> = {
    "src/infra/store.ts:del": "RedisStore.del: one DEL per hash tag on a cluster (byHashTag)",
    "src/infra/store.ts:unlink": "RedisStore.deletePattern: per node, one UNLINK per hash tag on a cluster",
    "src/modules/live/stream-slots.ts:pipeline": "RedisStreamSlots.renew: one pipeline per tenant (slotsKey only)",
    "src/infra/store.ts:defineCommand tgReadHit2":
      "RedisStore.readAndHit: the context's entry and rate-limit window of one tenant (tenantKey), refused unless every key has one hash tag",
    "src/infra/store.ts:defineCommand tgReadHit3": "RedisStore.readAndHit: the same with the membership",
  };
  const MULTI_KEY =
    /\.(multi|pipeline|mget|mset|msetnx|del|unlink|exists|touch|sunion|sinter|sdiff|sunionstore|sinterstore|sdiffstore|zunion|zinter|zdiff|zunionstore|zinterstore|zdiffstore|smove|lmove|blmove|rpoplpush|rename|renamenx|pfmerge|pfcount|bitop|watch|copy|eval|evalsha)\(/g;

  const files = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []));

  it("every multi-key Redis call in src/ is a reviewed one, and every other Lua script declares one key", () => {
    const found = new Set<string>();
    for (const file of files("src").filter((f) => !f.startsWith(path.join("src", "generated")))) {
      const text = readFileSync(file, "utf8");
      // Calls on a Redis client (the Store interface's del/deletePattern are RedisStore's, reviewed there).
      for (const line of text.split("\n")) {
        if (!/\b(redis|node|client|publishClient|subscribeClient)\.\w+\(/.test(line)) continue;
        for (const m of line.matchAll(MULTI_KEY)) found.add(`${file.split(path.sep).join("/")}:${m[1]}`);
      }
      // A script over one key, or one whose keys are reviewed (its number of keys is then its first argument).
      for (const m of text.matchAll(/defineCommand\("(\w+)",\s*\{([^}]*)\}/g)) {
        const keys = /numberOfKeys:\s*(\d+)/.exec(m[2]!)?.[1];
        if (keys !== "1") found.add(`${file.split(path.sep).join("/")}:defineCommand ${m[1]}`);
      }
    }
    expect([...found].sort()).toEqual(Object.keys(REVIEWED).sort());
  });
});

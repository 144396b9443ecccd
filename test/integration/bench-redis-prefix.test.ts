import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { benchOptions } from "../../bench/options.ts";
import { serverEnv } from "../../bench/processes.ts";
import { clearStaleDirectoryCache } from "../../bench/seed.ts";

/**
 * The bench under REDIS_KEY_PREFIX (issue 15 leftover): the server it starts
 * gets the prefix, and the stale directory entries it clears before a run
 * are its own deployment's, under the prefix. Before, the bench's SCAN
 * patterns had no prefix: a prefixed server's stale entries stayed (and an
 * unprefixed deployment's on the same Redis were deleted).
 */
const url = process.env.REDIS_URL;
const suffix = Math.random().toString(36).slice(2, 8);
const mine = `tgbench-${suffix}:`;
const other = `tgother-${suffix}:`;

describe.runIf(url)("bench scripts and REDIS_KEY_PREFIX", () => {
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(url!);
  });
  afterAll(async () => {
    for (const prefix of [mine, other]) {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length) await redis.del(...keys);
    }
    redis.disconnect();
  });

  it("clears the stale directory entries under its prefix, and only those", async () => {
    for (const prefix of [mine, other]) {
      await redis.set(`${prefix}tslug:bench-001`, "stale", "EX", 600);
      await redis.set(`${prefix}u:sub:owner-1@bench-001.test`, "stale", "EX", 600);
    }
    expect(await clearStaleDirectoryCache(url!, mine)).toBe(2);
    expect(await redis.exists(`${mine}tslug:bench-001`, `${mine}u:sub:owner-1@bench-001.test`)).toBe(0);
    expect(await redis.exists(`${other}tslug:bench-001`, `${other}u:sub:owner-1@bench-001.test`)).toBe(2);
  });

  it("reads REDIS_KEY_PREFIX as the server does, passes it to the server, and refuses a bad one naming it", () => {
    const env = { DATABASE_URL: "postgresql://postgres@127.0.0.1:5432/postgres", REDIS_URL: url };
    const opts = benchOptions({ ...env, REDIS_KEY_PREFIX: mine });
    expect(opts.redisKeyPrefix).toBe(mine);
    expect(serverEnv(opts, env.DATABASE_URL).REDIS_KEY_PREFIX).toBe(mine);
    expect(() => benchOptions({ ...env, REDIS_KEY_PREFIX: "no-colon" })).toThrow(/^REDIS_KEY_PREFIX: /);
  });
});

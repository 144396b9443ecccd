import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { quotaWindowKey } from "../../src/policy/quota.ts";
import { rateLimitWindowKey } from "../../src/infra/rate-limit.ts";
import { RedisStore } from "../../src/infra/store.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { eventually } from "../helpers/eventually.ts";
import { startOwnRedis, type OwnRedis } from "../helpers/own-redis.ts";

/**
 * The store's Lua scripts (src/infra/store-scripts.ts: the window hit, the
 * context's counted read) across a script cache that is gone: SCRIPT FLUSH,
 * and a Redis killed and started again empty, on a redis-server of the
 * test's own, with requests in flight. ioredis sends EVALSHA and, on
 * NOSCRIPT, the script itself (EVAL), per connection: the scripts must keep
 * counting. The requests in flight while Redis dies get the documented
 * answers (docs/degraded-modes.md): reads are answered (authorization from
 * PostgreSQL, the rate limit per process), the window-quota mutation is
 * written or refused SERVICE_UNAVAILABLE (503, Retry-After), never a
 * masked error, and a refused one wrote nothing.
 */
describe("the store's scripts across SCRIPT FLUSH and a Redis restart", () => {
  let redis: OwnRedis;
  let store: RedisStore;
  let t: TestApp;
  let acme: string;
  let token: string;
  let projectId: string;
  /** Killed by a test that failed before starting it again: the next test gets it back. */
  let down = false;

  beforeAll(async () => {
    redis = await startOwnRedis();
    store = new RedisStore(redis.url);
    t = await createTestApp({ store });
    acme = (await tenantIdsBySlug(t)).acme!;
    token = await t.memberToken("acme", "DEVELOPER");
    projectId = (await t.clients.platform.project.findFirstOrThrow({ where: { tenantId: acme } })).id;
  });
  afterEach(async () => {
    if (!down) return;
    await redis.start();
    down = false;
  });
  afterAll(async () => {
    await t?.close();
    await store?.close();
    await redis?.close();
  });

  const read = () => t.gql(`{ tenant { slug } }`, { token });
  const deploy = (branch: string) =>
    t.gql(`mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id } } }`, {
      token,
      variables: { i: { projectId: toGlobalId("Project", projectId), branch } },
    });
  const counter = async (key: string) => Number((await redis.client.get(key)) ?? 0);
  const quotaCount = () => counter(quotaWindowKey(acme, "DEPLOYMENTS_PER_HOUR", Date.now()));
  const windowCount = () => counter(rateLimitWindowKey(acme, Date.now()));
  const deployments = (branch: string) => t.clients.platform.deployment.count({ where: { tenantId: acme, branch } });

  it("after SCRIPT FLUSH: a burst of requests (pipelined scripts) is counted by the scripts", async () => {
    expect((await read()).status).toBe(200);
    const warm = await deploy("flush-warm");
    expect(warm.body.errors, JSON.stringify(warm.body)).toBeUndefined();
    await t.settle();
    const [quota, window] = [await quotaCount(), await windowCount()];
    await redis.client.script("FLUSH");
    const answers = await Promise.all([...Array.from({ length: 8 }, read), deploy("flush"), deploy("flush"), deploy("flush")]);
    for (const a of answers) expect(a.body.errors, JSON.stringify(a.body)).toBeUndefined();
    await t.settle();
    expect(await quotaCount()).toBe(quota + 3);
    // Every request counted once (the reads by the counted read's script, the mutations too).
    expect(await windowCount()).toBe(window + answers.length);
  });

  it("requests in flight while Redis dies get the documented answers; after a restart (no scripts, no keys) the scripts count again", async () => {
    expect((await read()).status).toBe(200);
    const branch = `restart-${Date.now()}`;
    const inFlight = [...Array.from({ length: 12 }, read), ...Array.from({ length: 4 }, () => deploy(branch))];
    await redis.kill();
    down = true;
    const during = [...inFlight, deploy(branch), read()];
    const answers = await Promise.all(during);
    const deploying = (i: number) => i >= 12 && i < 17;
    const written = answers.filter((a, i) => deploying(i) && !a.body.errors).length;
    for (const [i, a] of answers.entries()) {
      if (!deploying(i) || !a.body.errors) {
        expect(a.status, JSON.stringify(a.body)).toBe(200);
        expect(a.body.errors, JSON.stringify(a.body)).toBeUndefined();
        continue;
      }
      expect(a.status, JSON.stringify(a.body)).toBe(503);
      expect(a.body.errors[0].extensions).toMatchObject({ code: "SERVICE_UNAVAILABLE", dependency: "redis" });
      expect(a.headers.get("retry-after")).toBe("2");
    }
    // A refused deployment wrote nothing: the rows are the answered ones.
    expect(await deployments(branch)).toBe(written);

    await redis.start();
    down = false;
    await eventually("the store answering again", () => store.ping());
    const after = `${branch}-after`;
    await eventually("a deployment answered after the restart", async () => !(await deploy(after)).body.errors);
    expect(await quotaCount()).toBe(await deployments(after));
    await eventually("a read counted by the counted read's script", async () => {
      const before = await windowCount();
      const a = await read();
      return a.status === 200 && (await windowCount()) === before + 1;
    });
  });
});

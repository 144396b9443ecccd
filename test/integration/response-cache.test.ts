import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CACHE_TTL_SECONDS, settleResponseCacheWrites } from "../../src/infra/response-cache.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";

const DASHBOARD = `{ projects(first: 5) { totalCount edges { node { id name deployments(first: 3) { edges { node { id status } } } } } } }`;

describe("response cache", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ responseCache: { ttlSeconds: DEFAULT_CACHE_TTL_SECONDS } });
  });
  afterAll(() => t.close());

  it("smoke", async () => {
    const token = await t.memberToken("acme", "VIEWER");
    const outcomes: string[] = [];
    let first: unknown;
    for (let i = 0; i < 4; i++) {
      const res = await t.gql(DASHBOARD, { token });
      await settleResponseCacheWrites();
      outcomes.push(res.headers.get("x-cache")!);
      first ??= res.body;
      expect(res.body).toEqual(first);
    }
    console.log(outcomes, JSON.stringify(first).slice(0, 300));
  });
});

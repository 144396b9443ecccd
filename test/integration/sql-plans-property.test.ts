import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { createSqlCounter, ofPool, type SqlCounter } from "../helpers/sql-counter.ts";
import { isPlanned, post } from "../helpers/sql-plans.ts";

/**
 * Random selections over every declared field (docs/sql-plans.md), in random
 * order, some aliased, with random page sizes, orders and status filters,
 * sent by every role of two tenants and API keys of two: the SQL-planned answer
 * must be planned and byte for byte graphql-js' and graphql-jit's answer
 * (an app with `sqlPlans: false` over the same databases). Seeded: a failure
 * names its seed and the shrunk document.
 */

const pick = <T,>(values: readonly T[]) => fc.constantFrom(...values);

/** A selection: some of `fields` (each a name or [name, arbitrary sub-selection]) in random order, some aliased. */
function selection(fields: (string | [string, fc.Arbitrary<string>])[]): fc.Arbitrary<string> {
  return fc
    .shuffledSubarray(fields, { minLength: 1 })
    .chain((chosen) =>
      fc.tuple(
        ...chosen.map((f) => {
          const [name, sub] = typeof f === "string" ? [f, fc.constant("")] : f;
          return fc.tuple(fc.boolean(), sub).map(([alias, s]) => `${alias && name !== "__typename" ? `x_${name}: ` : ""}${name}${s}`);
        }),
      ),
    )
    .map((parts) => `{ ${parts.join(" ")} }`);
}

const user = selection(["id", "email", "name", "__typename"]);
const deployment = selection(["id", "status", "url", "commitSha", "branch", "createdAt", "updatedAt", "__typename", ["createdBy", user]]);
const connection = (node: fc.Arbitrary<string>) =>
  selection([
    "totalCount",
    "__typename",
    ["pageInfo", selection(["hasNextPage", "hasPreviousPage", "__typename"])],
    ["edges", node.chain((n) => selection(["__typename", ["node", fc.constant(n)]]).filter((s) => s.includes("node")))],
  ]);

const size = fc.option(fc.integer({ min: 0, max: 7 }), { nil: undefined });
const order = (fields: string[]) => fc.option(fc.tuple(pick(fields), pick(["ASC", "DESC"])), { nil: undefined });
const statuses = fc.option(fc.subarray(["QUEUED", "BUILDING", "READY", "ERROR", "CANCELED"]), { nil: undefined });

const args = (parts: (string | undefined)[]) => {
  const kept = parts.filter((p): p is string => p !== undefined);
  return kept.length ? `(${kept.join(", ")})` : "";
};

const deploymentsArgs = fc
  .tuple(size, order(["CREATED_AT", "UPDATED_AT"]), statuses)
  .map(([n, o, s]) => args([n === undefined ? undefined : `first: ${n}`, o && `orderBy: { field: ${o[0]}, direction: ${o[1]} }`, s && `filter: { status: [${s.join(", ")}] }`]));

const project = selection([
  "id",
  "name",
  "slug",
  "description",
  "createdAt",
  "updatedAt",
  "deploymentCount",
  "__typename",
  ["latestDeployment", deployment],
  ["deployments", fc.tuple(deploymentsArgs, connection(deployment)).map(([a, c]) => `${a} ${c}`)],
]);

const document = fc
  .tuple(size, order(["CREATED_AT", "UPDATED_AT", "NAME"]), connection(project), fc.boolean())
  .map(([n, o, c, typename]) => {
    const a = args([n === undefined ? undefined : `first: ${Math.min(n, 5)}`, o && `orderBy: { field: ${o[0]}, direction: ${o[1]} }`]);
    return `{ ${typename ? "__typename " : ""}projects${a} ${c} }`;
  });

describe("SQL-planned queries: random selections x callers x tenants", () => {
  let t: TestApp;
  let off: App;
  let counter: SqlCounter;
  const callers: { name: string; headers: Record<string, string> }[] = [];

  beforeAll(async () => {
    t = await createTestApp();
    off = createApp(testAppDeps(t.clients, t.store, { config: { sqlPlans: false } }));
    counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
    for (const slug of ["acme", "globex"]) {
      for (const role of ["OWNER", "ADMIN", "DEVELOPER", "VIEWER"] as const) {
        callers.push({ name: `${slug} ${role}`, headers: { authorization: `Bearer ${await t.memberToken(slug, role)}` } });
      }
    }
    // API keys: globex's FREE plan has no api_access; wayne's ENTERPRISE has.
    for (const slug of ["acme", "wayne"]) {
      const owner = { authorization: `Bearer ${await t.memberToken(slug, "OWNER")}` };
      const created = await post(off, `mutation { createApiKey(input: { name: "plans", role: VIEWER }) { secret } }`, owner);
      callers.push({ name: `${slug} API key`, headers: { "x-api-key": JSON.parse(created.text).data.createApiKey.secret } });
    }
  });
  afterAll(async () => {
    counter?.detach();
    await t?.close();
  });

  it("answers every selection as execution does, planned", async () => {
    await fc.assert(
      fc.asyncProperty(document, fc.nat(callers.length - 1), async (query, c) => {
        const h = callers[c]!.headers;
        await post(t.app, query, h);
        const interpreted = await post(off, query, h);
        const on = await counter.record(() => post(t.app, query, h));
        const compiled = await post(off, query, h);
        expect(isPlanned(ofPool(on.statements, "app")), `${callers[c]!.name}: ${query}`).toBe(true);
        expect(on.result.text).not.toContain('"errors"');
        expect(on.result.text).toBe(interpreted.text);
        expect(on.result.text).toBe(compiled.text);
      }),
      { seed: 1313, numRuns: 40 },
    );
  }, 180_000);
});

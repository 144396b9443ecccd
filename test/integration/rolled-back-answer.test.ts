import { GraphQLBoolean, GraphQLNonNull, GraphQLObjectType, GraphQLSchema, GraphQLString } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import type { Context } from "../../src/tenancy/context.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";

/**
 * "An answer with data means committed" (docs/idempotency.md): a mutation
 * with one root field runs its change without a savepoint, and a failed
 * change ends the request's transaction with ROLLBACK
 * (src/tenancy/mutation-changes.ts). Every service of the app rethrows, but a
 * resolver that catches its own change's failure and returns a fallback
 * ("try, else read") would have been answered with its data while the
 * transaction was rolled back (review-1330 F7). Served here over the app's
 * request path with a schema of the test's own (AppDeps.schema): the answer
 * is the not-committed error, data null, and nothing is written.
 */
const mutation = new GraphQLObjectType<unknown, Context>({
  name: "Mutation",
  fields: {
    rename: {
      type: GraphQLString,
      args: { id: { type: new GraphQLNonNull(GraphQLString) }, fail: { type: new GraphQLNonNull(GraphQLBoolean) } },
      resolve: async (_parent, args: { id: string; fail: boolean }, ctx) => {
        try {
          await ctx.tenantDb.transaction(async (tx) => {
            const { count } = await tx.project.updateMany({ where: { id: args.id }, data: { name: "Renamed by the test" } });
            if (count !== 1) throw new Error("the test's project was not found");
            if (args.fail) await tx.$queryRawUnsafe("SELECT 1/0");
          });
          return "renamed";
        } catch {
          return "fallback";
        }
      },
    },
  },
});
const schema = new GraphQLSchema({
  query: new GraphQLObjectType({ name: "Query", fields: { ok: { type: GraphQLBoolean, resolve: () => true } } }),
  mutation,
});

describe("a mutation whose change failed and was rolled back", () => {
  let t: TestApp;
  let app: App;
  beforeAll(async () => {
    t = await createTestApp();
    app = createApp(testAppDeps(t.clients, t.store, { schema, pools: t.clients.pools }));
  });
  afterAll(async () => {
    await t?.close();
  });

  async function rename(id: string, fail: boolean) {
    const token = await t.memberToken("acme", "DEVELOPER");
    const res = await app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: `mutation($id: String!, $fail: Boolean!) { rename(id: $id, fail: $fail) }`, variables: { id, fail } }),
    });
    return { status: res.status, text: await res.text() };
  }

  it("is not answered with the resolver's data", async () => {
    const project = await t.clients.platform.project.findFirstOrThrow({ where: { tenant: { slug: "acme" } } });
    const res = await rename(project.id, true);
    const body = JSON.parse(res.text);
    expect(body.data).toBeNull();
    expect(body.errors).toHaveLength(1);
    expect(body.errors[0].extensions.code).toBeTypeOf("string");
    expect(res.text).not.toContain("fallback");
    expect(res.text).not.toMatch(/SELECT|division|1\/0/i);
    expect((await t.clients.platform.project.findFirstOrThrow({ where: { id: project.id } })).name).toBe(project.name);
  });

  it("is answered with its data when the change committed", async () => {
    const project = await t.clients.platform.project.findFirstOrThrow({ where: { tenant: { slug: "acme" } }, orderBy: { createdAt: "desc" } });
    const res = await rename(project.id, false);
    expect(JSON.parse(res.text)).toEqual({ data: { rename: "renamed" } });
    expect((await t.clients.platform.project.findFirstOrThrow({ where: { id: project.id } })).name).toBe("Renamed by the test");
  });
});

import { describe, expect, it } from "vitest";
import { MemoryStore } from "../../src/infra/store.ts";
import { buildContext, type ContextDeps } from "../../src/tenancy/context.ts";
import { Directory } from "../../src/tenancy/directory.ts";

/** Every value reachable from `root` through properties (own, enumerable or not, getters not called), to `depth`. */
function reachable(root: object, depth: number, seen = new Set<unknown>()): unknown[] {
  if (depth < 0 || seen.has(root)) return [];
  seen.add(root);
  const out: unknown[] = [];
  for (const key of Reflect.ownKeys(root)) {
    const d = Object.getOwnPropertyDescriptor(root, key)!;
    if (!("value" in d)) continue;
    out.push(d.value);
    if (d.value && typeof d.value === "object") out.push(...reachable(d.value as object, depth - 1, seen));
  }
  return out;
}

describe("the request context", () => {
  it("exposes named capabilities, never the app's or the platform's database client", async () => {
    const app = { client: "app" };
    const platform = { client: "platform" };
    const store = new MemoryStore();
    const deps = {
      app,
      platform,
      store,
      directory: new Directory(platform as never, store),
      verifyToken: async () => {
        throw new Error("no token in this test");
      },
    } as unknown as ContextDeps;
    const ctx = await buildContext(deps, new Request("http://localhost/graphql"), { requestId: "r-1" }, { ip: null });
    const values = reachable(ctx, 3);
    // Not vacuous: the capabilities are there.
    expect(values).toContain(store);
    expect(typeof ctx.directory.membershipsOf).toBe("function");
    expect(values).not.toContain(app);
    expect(values).not.toContain(platform);
    expect(values).not.toContain(deps);
    expect(values).not.toContain(deps.directory);
    expect("deps" in ctx).toBe(false);
  });
});

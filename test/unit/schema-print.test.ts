import { readFileSync } from "node:fs";
import path from "node:path";
import { buildSchema } from "graphql";
import { describe, expect, it } from "vitest";
import { printSchema } from "../../src/schema.ts";

/** schema.graphql is what `npm run schema:print` writes: this fails when it is stale. */
describe("schema.graphql", () => {
  const committed = readFileSync(path.resolve(import.meta.dirname, "../../schema.graphql"), "utf8");

  it("equals the printed code-first schema (run `npm run schema:print` when this fails)", () => {
    expect(committed).toBe(printSchema());
  });

  it("is valid SDL that shows the policy directives", () => {
    const schema = buildSchema(committed);
    for (const name of ["auth", "quota", "crossTenant", "audit"]) expect(schema.getDirective(name)).toBeTruthy();
    expect(committed).toMatch(/provisionTenant\(.*\).*@crossTenant/);
    expect(committed).toMatch(/createProject\(.*\).*@auth\(requires: DEVELOPER\)/);
  });
});

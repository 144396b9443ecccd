import { readFileSync } from "node:fs";
import { generate } from "@graphql-codegen/cli";
import { describe, expect, it } from "vitest";
import config, { OPERATIONS_OUTPUT } from "../../codegen.ts";

/**
 * test/generated/operations.ts is committed generated code: this regenerates
 * it in memory from codegen.ts (schema.graphql + test/operations) and fails
 * when the committed file is stale. Fix: `npm run codegen`.
 */
describe("codegen output", () => {
  it("is current (run `npm run codegen` when this fails)", async () => {
    const outputs = await generate({ ...config, cwd: process.cwd() }, false);
    const generated = (outputs as { filename: string; content: string }[]).find((o) => o.filename.endsWith(OPERATIONS_OUTPUT));
    expect(generated, "codegen.ts produced no operations file").toBeDefined();
    const committed = readFileSync(OPERATIONS_OUTPUT, "utf8");
    expect(committed).toBe(generated!.content);
  }, 60_000);

  it("exports a TypedDocumentNode for each operation the tests and GraphiQL use", async () => {
    const ops = await import("../generated/operations.ts");
    for (const name of ["Dashboard", "DeploymentsPage", "CreateProject", "Viewer", "TenantSlug", "Node", "ProjectSearch"]) {
      const doc = (ops as Record<string, any>)[`${name}Document`];
      expect(doc?.kind, `${name}Document`).toBe("Document");
      expect(doc.definitions[0].name.value).toBe(name);
    }
  });
});

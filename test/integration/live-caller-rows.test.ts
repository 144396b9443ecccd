import { readFileSync } from "node:fs";
import { isObjectType } from "graphql";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CALLER_ROWS } from "../../src/http/use-live-delivery.ts";
import { schema } from "../../src/schema.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/**
 * Subscribers of one tenant share an event's execution unless their
 * selection can depend on who they are (src/http/use-live-delivery.ts):
 * one part of that rule is CALLER_ROWS, the types whose rows PostgreSQL
 * shows by the caller. This holds the list to the migrations' row-level
 * security: a table whose request-role policy reads the caller
 * (app_current_user(), app_current_api_key()) and is a GraphQL type must
 * be in it, so a policy added later cannot make two members share an
 * answer the database would give them differently (review of the eighth
 * round, LOW).
 */

/** Prisma model by table name (`@@map`), from the schema file. */
function modelsByTable(): Map<string, string> {
  const text = readFileSync(new URL("../../prisma/schema.prisma", import.meta.url), "utf8");
  const out = new Map<string, string>();
  for (const [, model, body] of text.matchAll(/^model (\w+) \{([\s\S]*?)^\}/gm)) {
    const table = /@@map\("([^"]+)"\)/.exec(body!)?.[1] ?? model!;
    out.set(table, model!);
  }
  return out;
}

describe("live classes: the caller-dependent types follow the row-level security", () => {
  let db: TestDatabase;
  let callerTables: string[];

  beforeAll(async () => {
    db = await createTestDatabase();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ table: string }>(
        `SELECT DISTINCT tablename AS table FROM pg_policies
          WHERE schemaname = 'public' AND 'tenantgraph_app' = ANY(roles)
            AND (coalesce(qual, '') || ' ' || coalesce(with_check, '')) ~ 'app_current_(user|api_key)\\(\\)'
          ORDER BY 1`,
      );
      callerTables = rows.map((r) => r.table);
    } finally {
      await client.end();
    }
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("every GraphQL type of a table whose policy reads the caller is in CALLER_ROWS", () => {
    // The users table's policy (app_visible_user(id, tenant, caller)) is one: the check can fail.
    expect(callerTables).toContain("users");
    const models = modelsByTable();
    const types = callerTables.map((table) => models.get(table)).filter((model): model is string => !!model && isObjectType(schema.getType(model)));
    expect(types).toContain("User");
    for (const type of types) expect([...CALLER_ROWS], `${type} is shown by the caller (its table's policy)`).toContain(type);
  });
});

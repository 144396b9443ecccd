import { readdirSync, readFileSync } from "node:fs";
import { Kind, parse, print, type DefinitionNode, type OperationDefinitionNode } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { createSqlCounter, type RecordedStatement, type SqlCounter } from "../helpers/sql-counter.ts";

/**
 * SQL golden files: the exact statements each operation of test/operations/
 * and of the GraphiQL examples sends to PostgreSQL, one file per operation
 * under test/__sql__/, recorded at the pg pools (test/helpers/sql-counter.ts)
 * for a warm request (directory cache filled). A change in the SQL a query
 * produces, or in how many statements it costs, shows up in review as a diff
 * of these files.
 *
 * When the change is intended, rewrite the files and review the diff:
 *
 *   DATABASE_URL=... REDIS_URL=... npx vitest run -u test/integration/sql-golden.test.ts
 *
 * Values that differ between runs (UUIDs, timestamps inlined by the request
 * transaction's BEGIN) are replaced by placeholders; bound parameters ($1...)
 * are not part of the text.
 */

/** Every document of test/operations/ (a new one is covered without being listed), and GraphiQL's examples. */
const DOCUMENTS = [
  ...readdirSync("test/operations")
    .filter((f) => f.endsWith(".graphql"))
    .sort()
    .map((f) => `test/operations/${f}`),
  "src/http/graphiql-examples.graphql",
];

/**
 * The golden files there were before any test ran: toMatchFileSnapshot
 * writes a missing file instead of failing (outside CI), so a deleted or
 * forgotten one is caught by comparing this list, read at collection, with
 * the operations.
 */
const GOLDEN_FILES = readdirSync("test/__sql__")
  .filter((f) => f.endsWith(".sql"))
  .map((f) => f.slice(0, -".sql".length))
  .sort();

interface Operation {
  name: string;
  source: string;
  document: string;
}

function operations(): Operation[] {
  const out: Operation[] = [];
  for (const source of DOCUMENTS) {
    const doc = parse(readFileSync(source, "utf8"));
    const fragments = doc.definitions.filter((d: DefinitionNode) => d.kind === Kind.FRAGMENT_DEFINITION);
    for (const def of doc.definitions) {
      if (def.kind !== Kind.OPERATION_DEFINITION) continue;
      const op = def as OperationDefinitionNode;
      // A subscription sends no SQL when it opens, and a POST cannot carry
      // its events (docs/live-updates.md: each event is an access check and
      // the node, in one read transaction).
      if (op.operation === "subscription") continue;
      out.push({ name: op.name!.value, source, document: [op, ...fragments].map((d) => print(d)).join("\n\n") });
    }
  }
  return out;
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/** One line per statement: `<pool>: <sql>`, run-specific values as placeholders. */
function golden(op: Operation, statements: RecordedStatement[]): string {
  const lines = statements.map((s) => `${s.pool}: ${s.sql.replace(UUID, "<uuid>")}`);
  return [`-- ${op.name} (${op.source}): ${statements.length} statements`, ...lines, ""].join("\n");
}

describe("SQL golden files (test/__sql__/)", () => {
  let t: TestApp;
  let counter: SqlCounter;
  let token: string;
  let created = 0;
  /** Variables per operation; a function when each request needs fresh values. */
  const variables: Record<string, Record<string, unknown> | (() => Record<string, unknown>)> = {};
  /** Callers other than acme's OWNER: the per-tenant configuration examples (wayne has sso; platform mutations). */
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    t = await createTestApp();
    token = await t.memberToken("acme", "OWNER");
    const acme = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    const project = await t.clients.platform.project.findFirstOrThrow({ where: { tenantId: acme.id }, orderBy: { slug: "asc" } });
    const deployment = await t.clients.platform.deployment.findFirstOrThrow({ where: { tenantId: acme.id }, orderBy: { createdAt: "asc" } });
    const projectId = toGlobalId("Project", project.id);
    Object.assign(variables, {
      CreateDeployment: { input: { projectId, branch: "main", commitSha: "abc123" } },
      Node: { id: projectId },
      Nodes: { ids: [projectId, toGlobalId("Deployment", deployment.id)] },
      ProjectSearch: { search: "a", first: 5 },
      UpdateProject: { input: { id: projectId, description: "Updated by the SQL golden test" } },
      // A fresh name each time: the slug derived from it must be unused.
      CreateProject: () => ({ name: `Golden project ${++created}` }),
    });
    const wayne = toGlobalId("Tenant", (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "wayne" } })).id);
    Object.assign(variables, {
      SetTenantIdentityProvider: { tenantId: wayne },
      ConfigureTenant: { tenantId: wayne, features: null, domain: "api.wayne.example" },
    });
    tokens.SetTenantIdentityProvider = await t.memberToken("wayne", "OWNER");
    tokens.ConfigureTenant = await t.adminToken();
    counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
  });
  afterAll(async () => {
    counter?.detach();
    await t?.close();
  });

  it("has a golden file for every operation, and an operation for every golden file", () => {
    expect(operations().map((o) => o.name).sort()).toEqual(GOLDEN_FILES);
  });

  it.each(operations().map((o) => [o.name, o] as const))("%s", async (name, op) => {
    const vars = variables[name] ?? {};
    const send = () => t.gql(op.document, { token: tokens[name] ?? token, variables: typeof vars === "function" ? vars() : vars });
    // The first request fills the directory cache (credentials, tenant,
    // membership); the recorded one reaches PostgreSQL only for its data.
    expect((await send()).body.errors).toBeUndefined();
    const { result, statements } = await counter.record(send);
    expect(result.body.errors).toBeUndefined();
    await expect(golden(op, statements)).toMatchFileSnapshot(`../__sql__/${name}.sql`);
  });
});

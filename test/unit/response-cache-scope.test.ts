import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { dashboardQuery } from "../../bench/scenarios.ts";
import { documentScope, documentScopes } from "../../src/http/response-cache-scope.ts";
import { schema } from "../../src/schema.ts";

/**
 * Which documents the response cache keys without the caller's role
 * (src/http/response-cache-scope.ts, docs/response-cache.md "Which entries
 * roles share"), on the real schema. The integration side (VIEWER and ADMIN
 * sharing an entry, or not) is test/integration/response-cache-roles.test.ts.
 */

const scope = (text: string) => {
  const { role, caller } = documentScope(schema, text);
  return { role, caller };
};

describe("response cache: who a document's answer depends on", () => {
  it("fields at the lowest role, on types without a role of their own, are role-free (the bench's dashboard)", () => {
    expect(scope(dashboardQuery())).toEqual({ role: false, caller: false });
    expect(scope(`{ tenant { name plan } workflows(first: 3) { edges { node { name status } } } }`)).toEqual({ role: false, caller: false });
    expect(scope(`{ members(first: 5) { edges { node { role user { email name } } } } }`)).toEqual({ role: false, caller: false });
    // Through fragments and variables alike.
    const viaFragment = `query($n: Int) { projects(first: $n) { ...P } } fragment P on ProjectConnection { totalCount edges { node { __typename name } } }`;
    expect(scope(viaFragment)).toEqual({ role: false, caller: false });
  });

  it("a field above the lowest role, or on a type with a role of its own, keeps the role", () => {
    expect(scope(`{ projects(first: 2) { totalCount } apiKeys(first: 5) { totalCount } }`).role).toBe(true);
    expect(scope(`{ auditLog(first: 1) { edges { node { action } } } }`).role).toBe(true);
    expect(scope(`{ usage { resource used } }`).role).toBe(true);
    // Only in a fragment, even one the operation does not spread: over-inclusive, never under.
    expect(scope(`{ projects(first: 1) { totalCount } } fragment K on Query { apiKeys(first: 1) { totalCount } }`).role).toBe(true);
  });

  it("node and nodes (an interface: which object they find, and how, is the type's loader's) keep the role", () => {
    expect(scope(`query($id: ID!) { node(id: $id) { id } }`).role).toBe(true);
    expect(scope(`query($id: ID!) { node(id: $id) { ... on Project { name } } }`).role).toBe(true);
    expect(scope(`query($ids: [ID!]!) { nodes(ids: $ids) { id } }`).role).toBe(true);
  });

  it("viewer (declared caller-dependent) keeps the caller and the role; a document that does not parse keeps both", () => {
    expect(scope(`{ viewer { role } }`)).toEqual({ role: true, caller: true });
    expect(scope(`{ me: viewer { user { email } } }`)).toEqual({ role: true, caller: true });
    expect(scope(`{ projects(first: 1) {`)).toEqual({ role: true, caller: true });
    expect(scope(`{ projects(first: 1) { totalCount notAField } }`).role).toBe(true);
  });

  it("is computed once per document text, bounded", () => {
    const of = documentScopes(schema, 2);
    const a = of(dashboardQuery());
    expect(of(dashboardQuery())).toBe(a);
    of(`{ tenant { name } }`);
    of(`{ tenant { slug } }`);
    expect(of(dashboardQuery())).not.toBe(a);
    expect(of(dashboardQuery())).toEqual(a);
  });

  /**
   * The rule trusts the metadata: a resolver that reads the caller's role to
   * shape a query's answer must say so (DEPENDS_ON, an @auth, or be reached
   * only through node/nodes). This lists where src/modules reads the role; a
   * new place fails here until it is checked and added with its reason.
   */
  it("every place src/modules reads the caller's role is one the rule covers", () => {
    const root = path.resolve(__dirname, "../../src/modules");
    const files = readdirSync(root, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
    const reads = files.filter((f) => /\bctx\.role\b|\bhasRole\(|\broleShortfall\(|\brequireRole\(|\brole: ctx\./.test(readFileSync(path.join(root, f), "utf8"))).sort();
    expect(reads).toEqual([
      // AuditLogEntry's node loader: found for ADMINs only, reached through node/nodes (role kept).
      "audit/audit.schema.ts",
      // Subscriptions: never cached.
      "live/access.ts",
      "live/stream.ts",
      // Mutations: never cached.
      "members/member.service.ts",
      // Query.viewer: DEPENDS_ON "caller".
      "users/viewer.schema.ts",
    ]);
  });
});

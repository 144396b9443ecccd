import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GraphQLField } from "graphql";
import { schema } from "../../src/schema.ts";
import type { Role } from "../../src/generated/prisma/enums.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { callField } from "../helpers/dummy-input.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * The role matrix of SPEC section 6, over HTTP: every mutation and every
 * ADMIN-only query, for every tenant role, for API keys of each role, and
 * for a platform admin. The expected role of each field is written down
 * here from the SPEC (not read from the directives), and every mutation of
 * the schema must appear in the table.
 */

/** OWNER_OR_PLATFORM: an OWNER acting in its tenant, or a platform admin (setTenantIdentityProvider). */
type Needed = Role | "PLATFORM" | "OWNER_OR_PLATFORM";
const SPEC_MUTATIONS: Record<string, Needed> = {
  createProject: "DEVELOPER",
  updateProject: "DEVELOPER",
  deleteProject: "ADMIN",
  createDeployment: "DEVELOPER",
  updateDeploymentStatus: "DEVELOPER",
  createWorkflow: "DEVELOPER",
  updateWorkflow: "DEVELOPER",
  deleteWorkflow: "ADMIN",
  inviteMember: "ADMIN",
  updateMemberRole: "ADMIN",
  removeMember: "ADMIN",
  createApiKey: "ADMIN",
  rotateApiKey: "ADMIN",
  revokeApiKey: "ADMIN",
  provisionTenant: "PLATFORM",
  suspendTenant: "PLATFORM",
  reactivateTenant: "PLATFORM",
  changeTenantPlan: "PLATFORM",
  setTenantLimits: "PLATFORM",
  scheduleTenantDeletion: "PLATFORM",
  purgeTenant: "PLATFORM",
  clearTenantCache: "PLATFORM",
  moveTenant: "PLATFORM",
  setTenantFeatures: "PLATFORM",
  setTenantDomain: "PLATFORM",
  setTenantIdentityProvider: "OWNER_OR_PLATFORM",
};
const SPEC_RESTRICTED_QUERIES: Record<string, Needed> = {
  apiKeys: "ADMIN",
  auditLog: "ADMIN",
  usage: "ADMIN",
  platform: "PLATFORM",
};
const RANK: Record<Role, number> = { VIEWER: 0, DEVELOPER: 1, ADMIN: 2, OWNER: 3 };
const ROLES: Role[] = ["VIEWER", "DEVELOPER", "ADMIN", "OWNER"];
const KEY_ROLES: Role[] = ["VIEWER", "DEVELOPER", "ADMIN"];
const AUTH_CODES = ["FORBIDDEN", "UNAUTHENTICATED", "TENANT_REQUIRED", "TENANT_ACCESS_DENIED", "INTERNAL_SERVER_ERROR"];

interface Caller {
  label: string;
  role: Role | null;
  platformAdmin: boolean;
  headers: () => Promise<Record<string, string>>;
}

describe("role matrix", () => {
  let t: TestApp;
  const store = isolatedStore();
  const callers: Caller[] = [];

  beforeAll(async () => {
    t = await createTestApp({ store });
    const acme = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    // The matrix sends a few hundred requests: keep the rate limiter out of it.
    await t.clients.platform.tenantLimitOverride.create({ data: { tenantId: acme.id, resource: "API_REQUESTS_PER_MINUTE", limit: null } });
    const owner = await t.memberToken("acme", "OWNER");
    for (const role of ROLES) {
      const token = await t.memberToken("acme", role);
      callers.push({ label: `user ${role}`, role, platformAdmin: false, headers: async () => ({ authorization: `Bearer ${token}` }) });
    }
    for (const role of KEY_ROLES) {
      const res = await t.gql(`mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }`, {
        token: owner,
        variables: { i: { name: `matrix ${role}`, role } },
      });
      expect(res.body.errors).toBeUndefined();
      const secret = res.body.data.createApiKey.secret as string;
      callers.push({ label: `API key ${role}`, role, platformAdmin: false, headers: async () => ({ "x-api-key": secret }) });
    }
    const admin = await t.adminToken();
    callers.push({ label: "platform admin", role: null, platformAdmin: true, headers: async () => ({ authorization: `Bearer ${admin}` }) });
  });
  afterAll(async () => {
    await t?.close();
    await store.close();
  });

  const mutations = Object.values(schema.getMutationType()!.getFields());
  const queries = Object.values(schema.getQueryType()!.getFields()).filter((f) => f.name in SPEC_RESTRICTED_QUERIES);

  it("the SPEC table names every mutation of the schema, and the schema has every restricted query", () => {
    expect(mutations.map((f) => f.name).filter((n) => !(n in SPEC_MUTATIONS))).toEqual([]);
    expect(queries.map((f) => f.name).sort()).toEqual(Object.keys(SPEC_RESTRICTED_QUERIES).sort());
  });

  it("allows exactly the roles the SPEC allows", async () => {
    const fields: (readonly [GraphQLField<any, any>, "query" | "mutation", Needed])[] = [
      ...mutations.map((f) => [f, "mutation", SPEC_MUTATIONS[f.name]!] as const),
      ...queries.map((f) => [f, "query", SPEC_RESTRICTED_QUERIES[f.name]!] as const),
    ];
    const failures: string[] = [];
    let cases = 0;
    for (const [field, kind, needed] of fields) {
      for (const caller of callers) {
        cases++;
        const { query, variables } = callField(field, kind);
        const res = await t.gql(query, { variables, headers: await caller.headers() });
        const error = res.body.errors?.find((e: any) => e.path?.[0] === field.name) ?? res.body.errors?.[0];
        const code = error?.extensions?.code as string | undefined;
        const tenantRole = needed === "OWNER_OR_PLATFORM" ? "OWNER" : needed;
        const allowed =
          needed === "PLATFORM"
            ? caller.platformAdmin
            : (needed === "OWNER_OR_PLATFORM" && caller.platformAdmin) ||
              (!caller.platformAdmin && caller.role !== null && RANK[caller.role] >= RANK[tenantRole as Role]);
        const requires = needed === "PLATFORM" ? "PLATFORM_ADMIN" : tenantRole;
        if (allowed && code && AUTH_CODES.includes(code)) {
          failures.push(`${field.name} × ${caller.label}: expected allowed, got ${code} (${error.message})`);
        }
        if (!allowed && (code !== "FORBIDDEN" || error.extensions.requires !== requires)) {
          failures.push(`${field.name} × ${caller.label}: expected FORBIDDEN requires ${requires}, got ${code ?? "success"} ${error?.extensions?.requires ?? ""}`);
        }
      }
    }
    console.log(`RBAC matrix: ${fields.length} fields × ${callers.length} callers = ${cases} cases`);
    expect(failures).toEqual([]);
    expect(cases).toBe(fields.length * callers.length);
  });
});

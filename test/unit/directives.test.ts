import { execute, parse, subscribe, type ExecutionResult, type GraphQLField, type GraphQLSchema } from "graphql";
import SchemaBuilder from "@pothos/core";
import DirectivesPlugin from "@pothos/plugin-directives";
import { describe, expect, it } from "vitest";
import type { PolicyDirectives } from "../../src/graphql/builder.ts";
import PolicyEnforcerPlugin from "../../src/policy/enforcer.ts";
import "../../src/policy/auth-field.ts";
import { schema } from "../../src/schema.ts";
import { checkAccess, checkDeclaredCountQuota, enforce } from "../../src/policy/enforcer.ts";
import { directiveList, policyOf, type FieldPolicy } from "../../src/policy/field-policy.ts";
import { redact, writeAudit } from "../../src/policy/audit.ts";
import { isStatementTimeout } from "../../src/infra/query-timeout.ts";
import { isCountResource } from "../../src/policy/quota.ts";
import type { Context } from "../../src/tenancy/context.ts";
import type { Role } from "../../src/generated/prisma/enums.ts";
import { callField } from "../helpers/dummy-input.ts";

/**
 * The policy directives as data: every tenant-data root field declares who
 * may call it, and the enforcer refuses on every declared field, checked by
 * walking the schema rather than by listing fields by hand.
 */

const ALLOW_WITHOUT_AUTH = new Set(["node", "nodes", "viewer"]);

const fieldsOf = (s: GraphQLSchema, type: "Query" | "Mutation" | "Subscription") =>
  Object.values((type === "Query" ? s.getQueryType() : type === "Mutation" ? s.getMutationType() : s.getSubscriptionType())!.getFields());
const directivesOf = (f: GraphQLField<unknown, unknown>) => directiveList(f.extensions?.directives).map((d) => d.name);

function fakeCtx(over: Partial<Context> = {}): Context {
  return {
    requestId: "req-1",
    ip: null,
    user: null,
    apiKey: null,
    actor: null,
    tenant: null,
    role: null,
    membershipId: null,
    isPlatformAdmin: false,
    operation: "query",
    loaders: new Map(),
    directory: {} as never,
    store: {} as never,
    finish: async () => {},
    get db(): never {
      throw new Error("no database in unit tests");
    },
    get tenantDb(): never {
      throw new Error("no database in unit tests");
    },
    ...over,
  } as Context;
}

const tenant = { id: "00000000-0000-0000-0000-0000000000aa", slug: "t", name: "T", plan: "PRO", status: "ACTIVE", region: "x", createdAt: "", limits: {} } as never;
const member = (role: Role) =>
  fakeCtx({
    user: { id: "u", email: "u@x", name: null, authSubject: "u", isPlatformAdmin: false },
    actor: { type: "USER", id: "u", label: "u@x" },
    tenant,
    role,
  });

describe("schema walk", () => {
  it("every tenant-data query field, every mutation and every subscription carries @auth or @crossTenant", () => {
    expect(fieldsOf(schema, "Subscription").map((f) => f.name).sort()).toEqual(["auditLogAppended", "deploymentUpdated", "workflowUpdated"]);
    const missing = [...fieldsOf(schema, "Query"), ...fieldsOf(schema, "Mutation"), ...fieldsOf(schema, "Subscription")]
      .filter((f) => !ALLOW_WITHOUT_AUTH.has(f.name))
      .filter((f) => !directivesOf(f).some((d) => d === "auth" || d === "crossTenant"))
      .map((f) => f.name);
    expect(missing).toEqual([]);
  });

  it("every mutation declares @audit; the count-quota mutations are known", () => {
    const counted: string[] = [];
    for (const f of fieldsOf(schema, "Mutation")) {
      expect(directivesOf(f), f.name).toContain("audit");
      const policy = policyOf(f.extensions?.directives);
      if (policy.quota && isCountResource(policy.quota.resource)) {
        counted.push(f.name);
      }
    }
    // Not vacuous: the count-quota mutations are there.
    expect(counted.sort()).toEqual(["createProject", "inviteMember"]);
  });

  it("the printed schema shows the directives", async () => {
    const { printSchema } = await import("../../src/schema.ts");
    const sdl = printSchema();
    expect(sdl).toMatch(/createProject\(.*@auth\(requires: DEVELOPER\) @quota\(resource: PROJECTS, cost: 1\) @audit\(action: "project\.create"\)/);
    expect(sdl).toMatch(/type ApiKey implements Node @auth\(requires: ADMIN\)/);
    expect(sdl).toMatch(/auditLogAppended: AuditLogEntry! @auth\(requires: ADMIN\)/);
    expect(sdl).toMatch(/deploymentUpdated\(projectId: ID\): Deployment! @auth\(requires: VIEWER\)/);
  });
});

describe("the enforcer on the built schema", () => {
  const protectedRoots = [...fieldsOf(schema, "Query"), ...fieldsOf(schema, "Mutation"), ...fieldsOf(schema, "Subscription")].filter(
    (f) => !ALLOW_WITHOUT_AUTH.has(f.name),
  );
  const run = async (f: GraphQLField<unknown, unknown>, ctx: Context) => {
    const kind =
      schema.getMutationType()!.getFields()[f.name] === f ? "mutation" : schema.getSubscriptionType()!.getFields()[f.name] === f ? "subscription" : "query";
    const { query, variables } = callField(f, kind);
    const args = { schema, document: parse(query), contextValue: ctx, variableValues: variables };
    // A subscription is refused when it is opened: subscribe() answers with the error instead of a stream.
    const result = (kind === "subscription" ? await subscribe(args) : await execute(args)) as ExecutionResult;
    return result.errors?.find((e) => e.path?.[0] === f.name);
  };

  it("refuses an anonymous caller on every protected root field", async () => {
    for (const f of protectedRoots) {
      expect([f.name, (await run(f, fakeCtx()))?.extensions?.code]).toEqual([f.name, "UNAUTHENTICATED"]);
    }
  });

  it("refuses a VIEWER on every field that needs more, with the required role", async () => {
    const above = protectedRoots.filter((f) => {
      const p = policyOf(f.extensions?.directives);
      return p.crossTenant || (p.auth && p.auth !== "VIEWER");
    });
    expect(above.length).toBeGreaterThan(10);
    for (const f of above) {
      const err = await run(f, member("VIEWER"));
      const p = policyOf(f.extensions?.directives);
      expect([f.name, err?.extensions?.code, err?.extensions?.requires]).toEqual([
        f.name,
        "FORBIDDEN",
        // @crossTenant with @auth: a caller in a tenant needs the role.
        p.crossTenant && !p.auth ? "PLATFORM_ADMIN" : p.auth,
      ]);
    }
  });
});

describe("policyOf", () => {
  it("reads the unordered (object) and the list form, and the type's @auth", () => {
    expect(policyOf({ auth: { requires: "ADMIN" }, audit: { action: "x.y" } })).toEqual({ crossTenant: false, auth: "ADMIN", audit: "x.y" });
    expect(policyOf([{ name: "quota", args: { resource: "PROJECTS" } }, { name: "crossTenant", args: {} }])).toEqual({
      crossTenant: true,
      quota: { resource: "PROJECTS", cost: 1 },
    });
    expect(policyOf({ auth: [{ requires: "DEVELOPER" }] }).auth).toBe("DEVELOPER");
    expect(policyOf(undefined, { auth: { requires: "ADMIN" } }).auth).toBe("ADMIN");
    expect(policyOf({ auth: { requires: "VIEWER" } }, { auth: { requires: "ADMIN" } }).auth).toBe("VIEWER");
    expect(policyOf({ auth: {} }).auth).toBe("VIEWER");
    expect(() => policyOf({ audit: { action: "Bad Action" } })).toThrow(/noun/);
    expect(policyOf({ feature: { name: "sso" } }).feature).toBe("sso");
    expect(policyOf(undefined, { feature: { name: "advanced_analytics" } }).feature).toBe("advanced_analytics");
    expect(() => policyOf({ feature: { name: "Not A Feature" } })).toThrow(/feature/);
  });
});

describe("checkAccess", () => {
  const auth = (requires: Role): FieldPolicy => ({ crossTenant: false, auth: requires });
  const code = (ctx: Context, p: FieldPolicy) => {
    try {
      checkAccess(ctx, p);
      return "OK";
    } catch (e: any) {
      return `${e.extensions.code}${e.extensions.requires ? `:${e.extensions.requires}` : ""}`;
    }
  };

  it("orders the roles VIEWER < DEVELOPER < ADMIN < OWNER", () => {
    const roles: Role[] = ["VIEWER", "DEVELOPER", "ADMIN", "OWNER"];
    for (const [i, held] of roles.entries()) {
      for (const [j, needed] of roles.entries()) {
        expect(code(member(held), auth(needed))).toBe(i >= j ? "OK" : `FORBIDDEN:${needed}`);
      }
    }
  });

  it("distinguishes no credentials, no tenant, and platform admins (no tenant role)", () => {
    expect(code(fakeCtx(), auth("VIEWER"))).toBe("UNAUTHENTICATED");
    const user = { id: "u", email: "u@x", name: null, authSubject: "u", isPlatformAdmin: false };
    expect(code(fakeCtx({ user, actor: { type: "USER", id: "u", label: "" } }), auth("VIEWER"))).toBe("TENANT_REQUIRED");
    const admin = fakeCtx({ user: { ...user, isPlatformAdmin: true }, actor: { type: "USER", id: "u", label: "" }, isPlatformAdmin: true });
    expect(code(admin, auth("VIEWER"))).toBe("FORBIDDEN:VIEWER");
    expect(code(admin, { crossTenant: true })).toBe("OK");
    expect(code(member("OWNER"), { crossTenant: true })).toBe("FORBIDDEN:PLATFORM_ADMIN");
    expect(code(fakeCtx(), { crossTenant: true })).toBe("UNAUTHENTICATED");
  });
});

describe("@audit and @quota bookkeeping", () => {
  const policy: FieldPolicy = { crossTenant: false, auth: "DEVELOPER", audit: "project.create" };

  it("a mutation that wrote no audit entry does not report success", async () => {
    const resolver = enforce(async () => ({ ok: true }), policy, "Mutation.createThing");
    await expect(resolver({}, { input: {} }, member("ADMIN"), {} as never)).rejects.toThrow(/wrote no audit entry/);
  });

  it("writeAudit refuses an action other than the declared one, inside the transaction", async () => {
    let inserted = false;
    const tx = { auditLogEntry: { create: async () => (inserted = true) } } as never;
    const resolver = enforce(async (_p, _a, ctx: Context) => writeAudit(tx, ctx, { action: "project.delete" }), policy, "Mutation.createThing");
    await expect(resolver({}, { input: {} }, member("ADMIN"), {} as never)).rejects.toThrow(/declared @audit\(project\.create\)/);
    expect(inserted).toBe(false);
  });

  it("writeAudit defaults to the declared action and the input as metadata", async () => {
    const rows: any[] = [];
    const tx = { auditLogEntry: { create: async (a: any) => rows.push(a.data) } } as never;
    const resolver = enforce(async (_p, _a, ctx: Context) => writeAudit(tx, ctx, {}), policy, "Mutation.createThing");
    await resolver({}, { input: { name: "n", password: "hunter2" } }, member("ADMIN"), {} as never);
    expect(rows[0]).toMatchObject({ action: "project.create", metadata: { input: { name: "n", password: "[redacted]" } }, requestId: "req-1" });
  });

  it("a count quota is checked in the mutation's transaction, under its lock: over the limit QUOTA_EXCEEDED and no audit entry", async () => {
    const counted: FieldPolicy = { crossTenant: false, auth: "DEVELOPER", audit: "project.create", quota: { resource: "PROJECTS", cost: 1 } };
    const limited = member("ADMIN");
    limited.tenant = { ...(tenant as object), limits: { PROJECTS: 3 } } as never;
    const run = async (countAfterInsert: number) => {
      const calls: string[] = [];
      const tx = {
        $executeRawUnsafe: async () => void calls.push("lock"),
        $queryRawUnsafe: async () => (calls.push("count"), [{ n: countAfterInsert }]),
        auditLogEntry: { create: async () => (calls.push("audit"), { id: "entry-1" }) },
      } as never;
      const resolver = enforce(
        async (_p, _a, ctx: Context) => {
          await checkDeclaredCountQuota(tx, ctx, true);
          await writeAudit(tx, ctx, {});
        },
        counted,
        "Mutation.createThing",
      );
      const outcome = await Promise.resolve(resolver({}, { input: {} }, limited, {} as never)).then(() => null, (e: { extensions?: { code?: string } }) => e.extensions?.code);
      return { outcome, calls };
    };
    // The new row is already counted: 3 rows = within a limit of 3, 4 = over.
    expect(await run(3)).toEqual({ outcome: null, calls: ["lock", "count", "audit"] });
    expect(await run(4)).toEqual({ outcome: "QUOTA_EXCEEDED", calls: ["lock", "count"] });
  });

  it("a count-quota mutation whose resolver never checked the count does not report success, and writeAudit does not check it for it", async () => {
    const counted: FieldPolicy = { crossTenant: false, auth: "DEVELOPER", audit: "project.create", quota: { resource: "PROJECTS", cost: 1 } };
    const calls: string[] = [];
    const tx = { auditLogEntry: { create: async () => (calls.push("audit"), { id: "entry-1" }) } } as never;
    const resolver = enforce(async (_p, _a, ctx: Context) => writeAudit(tx, ctx, {}), counted, "Mutation.createThing");
    await expect(resolver({}, { input: {} }, member("ADMIN"), {} as never)).rejects.toThrow(/@quota\(PROJECTS\) on Mutation.createThing: the count was never checked/);
    expect(calls).toEqual(["audit"]);
  });

  it("redacts secrets at any depth", () => {
    expect(redact({ input: { config: { apiToken: "t", nested: [{ clientSecret: "s", ok: 1 }] }, apiKey: "k", name: "x" } })).toEqual({
      input: { config: { apiToken: "[redacted]", nested: [{ clientSecret: "[redacted]", ok: 1 }] }, apiKey: "[redacted]", name: "x" },
    });
  });
});

describe("statement timeout errors", () => {
  it("recognises PostgreSQL 57014 however Prisma wraps it", () => {
    expect(isStatementTimeout({ code: "P2010", meta: { driverAdapterError: { cause: { originalCode: "57014" } } } })).toBe(true);
    expect(isStatementTimeout({ originalError: { code: "57014" } })).toBe(true);
    expect(isStatementTimeout({ code: "P2010", meta: { driverAdapterError: { cause: { originalCode: "23505" } } } })).toBe(false);
    expect(isStatementTimeout(new Error("boom"))).toBe(false);
  });
});

describe("t.auth is the one way to declare @auth on a field", () => {
  const build = (declare: "t.auth" | "directive") => {
    const b = new SchemaBuilder<{ Context: Context; Directives: PolicyDirectives }>({ plugins: [DirectivesPlugin, PolicyEnforcerPlugin] } as never);
    b.queryType({
      fields: (t) => ({
        secret:
          declare === "t.auth"
            ? t.auth("ADMIN").string({ resolve: (_root, _args, ctx) => ctx.tenant.slug })
            : t.string({ directives: { auth: { requires: "ADMIN" } }, resolve: () => "x" }),
      }),
    });
    return b.toSchema();
  };

  it("a field built with t.auth gets the directive (and its resolver a TenantContext)", () => {
    expect(directivesOf(build("t.auth").getQueryType()!.getFields().secret!)).toEqual(["auth"]);
  });

  it("a bare @auth directive on a field is refused when the schema is built", () => {
    expect(() => build("directive")).toThrow(/Query\.secret: declare @auth with t\.auth\(role\)/);
  });

  it("t.auth refuses @crossTenant (its resolver would be typed with a tenant a platform admin lacks); t.authOrCrossTenant declares both", () => {
    const b = new SchemaBuilder<{ Context: Context; Directives: PolicyDirectives }>({ plugins: [DirectivesPlugin, PolicyEnforcerPlugin] } as never);
    b.queryType({ fields: (t) => ({ both: t.auth("OWNER").string({ directives: { crossTenant: {} }, resolve: (_root, _args, ctx) => ctx.tenant.slug }) }) });
    expect(() => b.toSchema()).toThrow(/t\.authOrCrossTenant/);
    const ok = new SchemaBuilder<{ Context: Context; Directives: PolicyDirectives }>({ plugins: [DirectivesPlugin, PolicyEnforcerPlugin] } as never);
    ok.queryType({ fields: (t) => ({ both: t.authOrCrossTenant("OWNER").string({ resolve: (_root, _args, ctx) => ctx.tenant?.slug ?? "platform" }) }) });
    expect(directivesOf(ok.toSchema().getQueryType()!.getFields().both!)).toEqual(["auth", "crossTenant"]);
  });

  it("@audit or @quota outside Mutation is refused when the schema is built", () => {
    const b = new SchemaBuilder<{ Context: Context; Directives: PolicyDirectives }>({ plugins: [DirectivesPlugin, PolicyEnforcerPlugin] } as never);
    b.queryType({ fields: (t) => ({ audited: t.auth("ADMIN").string({ directives: { audit: { action: "project.update" } }, resolve: () => "x" }) }) });
    expect(() => b.toSchema()).toThrow(/Query\.audited: @quota and @audit belong on mutations/);
  });

  it("an audit action outside AUDIT_ACTIONS is refused: an @audit when the schema is built, writeAudit and crossTenant() before writing", async () => {
    const b = new SchemaBuilder<{ Context: Context; Directives: PolicyDirectives }>({ plugins: [DirectivesPlugin, PolicyEnforcerPlugin] } as never);
    b.queryType({ fields: (t) => ({ x: t.string({ resolve: () => "x" }) }) });
    b.mutationType({ fields: (t) => ({ made: t.auth("ADMIN").string({ directives: { audit: { action: "thing.make" as never } }, resolve: () => "x" }) }) });
    expect(() => b.toSchema()).toThrow(/Mutation\.made: @audit\(thing\.make\) is not in AUDIT_ACTIONS/);
    const rows: unknown[] = [];
    const tx = { auditLogEntry: { create: async (a: unknown) => void rows.push(a) } } as never;
    await expect(writeAudit(tx, member("DEVELOPER"), { action: "thing.make" as never })).rejects.toThrow(/not in AUDIT_ACTIONS/);
    expect(rows).toEqual([]);
  });
});

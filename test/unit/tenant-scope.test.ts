import { describe, expect, it } from "vitest";
import { scopeArgs } from "../../src/tenancy/tenant-scope.ts";
import { TENANT_MODELS, TenantScopeViolation } from "../../src/tenancy/tenant-scope-model.ts";

const A = "00000000-0000-4000-8000-00000000000a";
const B = "00000000-0000-4000-8000-00000000000b";
const scope = { tenantId: A };

describe("TENANT_MODELS", () => {
  it("is every model with a tenantId, and not the global ones", () => {
    expect([...TENANT_MODELS].sort()).toEqual(
      ["ApiKey", "AuditLogEntry", "Deployment", "IdempotencyKey", "Membership", "Project", "TenantCacheGeneration", "TenantLimitOverride", "TenantRequestTotals", "TenantStats", "UsageCounter", "Workflow"].sort(),
    );
  });
});

describe("scopeArgs: where", () => {
  it("adds the tenant to a read without where", () => {
    expect(scopeArgs("Project", "findMany", undefined, scope)).toEqual({ where: { tenantId: A } });
    expect(scopeArgs("Deployment", "count", {}, scope)).toEqual({ where: { tenantId: A } });
  });

  it("overwrites a caller's tenantId (top level)", () => {
    const args = scopeArgs("Project", "findMany", { where: { tenantId: B, name: "x" } }, scope);
    expect(args.where).toEqual({ tenantId: A, name: "x" });
  });

  it("overwrites the tenantId inside a compound unique key", () => {
    const args = scopeArgs("Project", "findUnique", { where: { tenantId_id: { tenantId: B, id: "p1" } } }, scope);
    expect(args.where).toEqual({ tenantId_id: { tenantId: A, id: "p1" }, tenantId: A });
    const slug = scopeArgs("Project", "update", { where: { tenantId_slug: { tenantId: B, slug: "s" } }, data: { name: "n" } }, scope);
    expect(slug.where).toEqual({ tenantId_slug: { tenantId: A, slug: "s" }, tenantId: A });
  });

  it("scopes updateMany, delete and deleteMany, aggregate and groupBy", () => {
    for (const op of ["updateMany", "delete", "deleteMany", "aggregate", "groupBy", "findFirst", "findUniqueOrThrow"]) {
      expect(scopeArgs("Deployment", op, { where: { status: "READY" } }, scope).where, op).toEqual({ status: "READY", tenantId: A });
    }
  });

  it("confines Tenant reads to the scope's tenant, preserving the caller's filter", () => {
    expect(scopeArgs("Tenant", "findUnique", { where: { id: B } }, scope).where).toEqual({ id: B, AND: [{ id: A }] });
    expect(scopeArgs("Tenant", "findMany", { where: { AND: { slug: "b" } } }, scope).where).toEqual({
      AND: [{ slug: "b" }, { id: A }],
    });
  });

  it("confines User reads to members of the tenant (or the caller)", () => {
    expect(scopeArgs("User", "findMany", {}, scope).where).toEqual({ AND: [{ memberships: { some: { tenantId: A } } }] });
    expect(scopeArgs("User", "findMany", {}, { tenantId: A, userId: "u1" }).where).toEqual({
      AND: [{ OR: [{ id: "u1" }, { memberships: { some: { tenantId: A } } }] }],
    });
  });

  it("rewrites relation filters, including inside AND/OR/NOT", () => {
    const args = scopeArgs(
      "User",
      "findMany",
      { where: { OR: [{ memberships: { some: { tenantId: B } } }, { NOT: { deployments: { none: { status: "READY" } } } }] } },
      scope,
    );
    expect(args.where).toEqual({
      OR: [{ memberships: { some: { tenantId: A } } }, { NOT: { deployments: { none: { status: "READY", tenantId: A } } } }],
      AND: [{ memberships: { some: { tenantId: A } } }],
    });
    const toOne = scopeArgs("Deployment", "findMany", { where: { project: { is: { tenantId: B, name: "p" } } } }, scope);
    expect(toOne.where).toEqual({ project: { is: { tenantId: A, name: "p" } }, tenantId: A });
    const bare = scopeArgs("Deployment", "findMany", { where: { project: { name: "p" } } }, scope);
    expect(bare.where).toEqual({ project: { name: "p", tenantId: A }, tenantId: A });
  });
});

describe("scopeArgs: data", () => {
  it("forces data.tenantId on create, createMany and createManyAndReturn", () => {
    expect(scopeArgs("Project", "create", { data: { tenantId: B, name: "n", slug: "s" } }, scope).data).toEqual({
      tenantId: A,
      name: "n",
      slug: "s",
    });
    expect(scopeArgs("Project", "create", { data: { name: "n", slug: "s" } }, scope).data).toEqual({ tenantId: A, name: "n", slug: "s" });
    expect(scopeArgs("Deployment", "createMany", { data: [{ tenantId: B, projectId: "p" }, { projectId: "q" }] }, scope).data).toEqual([
      { tenantId: A, projectId: "p" },
      { tenantId: A, projectId: "q" },
    ]);
    expect(scopeArgs("Deployment", "createManyAndReturn", { data: [{ tenantId: B, projectId: "p" }] }, scope).data).toEqual([
      { tenantId: A, projectId: "p" },
    ]);
  });

  it("forces the tenant into upsert: where, create; refuses moving in update", () => {
    const args = scopeArgs(
      "UsageCounter",
      "upsert",
      { where: { tenantId_resource_windowStart: { tenantId: B, resource: "SEATS", windowStart: "w" } }, create: { tenantId: B, resource: "SEATS" }, update: { count: 1 } },
      scope,
    );
    expect(args.where).toEqual({ tenantId_resource_windowStart: { tenantId: A, resource: "SEATS", windowStart: "w" }, tenantId: A });
    expect(args.create).toEqual({ tenantId: A, resource: "SEATS" });
    expect(() =>
      scopeArgs("UsageCounter", "upsert", { where: {}, create: { resource: "SEATS" }, update: { tenantId: B } }, scope),
    ).toThrow(TenantScopeViolation);
  });

  it("refuses the `tenant` relation in data", () => {
    expect(() => scopeArgs("Project", "create", { data: { name: "n", slug: "s", tenant: { connect: { id: B } } } }, scope)).toThrow(
      TenantScopeViolation,
    );
    expect(() => scopeArgs("Project", "update", { where: { tenantId_id: { tenantId: A, id: "p" } }, data: { tenant: { connect: { id: B } } } }, scope)).toThrow(
      TenantScopeViolation,
    );
  });

  it("refuses moving rows to another tenant, allows restating the own tenant", () => {
    expect(() => scopeArgs("Project", "update", { where: {}, data: { tenantId: B } }, scope)).toThrow(/cannot move between tenants/);
    expect(() => scopeArgs("Deployment", "updateMany", { where: {}, data: { tenantId: B } }, scope)).toThrow(TenantScopeViolation);
    expect(scopeArgs("Project", "update", { where: {}, data: { tenantId: A, name: "x" } }, scope).data).toEqual({ tenantId: A, name: "x" });
  });

  it("refuses nested writes that would create or touch another tenant's rows", () => {
    expect(() =>
      scopeArgs("User", "update", { where: { id: "u" }, data: { memberships: { create: { tenantId: B, role: "OWNER" } } } }, scope),
    ).toThrow(TenantScopeViolation);
    expect(() =>
      scopeArgs("Project", "create", { data: { name: "n", slug: "s", deployments: { create: [{ tenant: { connect: { id: B } } }] } } }, scope),
    ).toThrow(TenantScopeViolation);
    const nested = scopeArgs("User", "update", { where: { id: "u" }, data: { memberships: { deleteMany: {}, updateMany: { where: { role: "VIEWER" }, data: { role: "ADMIN" } } } } }, scope);
    expect(nested.data).toEqual({
      memberships: { deleteMany: { tenantId: A }, updateMany: { where: { role: "VIEWER", tenantId: A }, data: { role: "ADMIN" } } },
    });
  });
});

describe("scopeArgs: refused models and operations", () => {
  it("refuses PlatformAuditEntry entirely", () => {
    for (const op of ["findMany", "findUnique", "count", "create", "deleteMany"]) {
      expect(() => scopeArgs("PlatformAuditEntry", op, {}, scope), op).toThrow(TenantScopeViolation);
    }
  });

  it("refuses every Tenant write, allows Tenant reads", () => {
    for (const op of ["create", "createMany", "update", "updateMany", "upsert", "delete", "deleteMany"]) {
      expect(() => scopeArgs("Tenant", op, { where: { id: A }, data: {} }, scope), op).toThrow(TenantScopeViolation);
    }
    expect(() => scopeArgs("Tenant", "findUnique", { where: { id: A } }, scope)).not.toThrow();
  });

  it("refuses deleting or upserting users", () => {
    expect(() => scopeArgs("User", "delete", { where: { id: "u" } }, scope)).toThrow(TenantScopeViolation);
    expect(() => scopeArgs("User", "deleteMany", {}, scope)).toThrow(TenantScopeViolation);
    expect(() => scopeArgs("User", "upsert", { where: { id: "u" }, create: {}, update: {} }, scope)).toThrow(TenantScopeViolation);
  });
});

describe("scopeArgs: include and select", () => {
  it("adds where to list relations in include, recursively", () => {
    const args = scopeArgs("Project", "findMany", { include: { deployments: true, workflows: { where: { status: "ACTIVE" }, include: { project: true } } } }, scope);
    expect(args.include).toEqual({
      deployments: { where: { tenantId: A } },
      workflows: { where: { status: "ACTIVE", tenantId: A }, include: { project: {} } },
    });
  });

  it("scopes list relations of global models (User.memberships, Tenant.projects) and nested selects", () => {
    const args = scopeArgs("User", "findMany", { select: { id: true, memberships: { select: { tenant: { select: { projects: true } } } } } }, scope);
    expect(args.select).toEqual({
      id: true,
      memberships: { select: { tenant: { select: { projects: { where: { tenantId: A } } } } }, where: { tenantId: A } },
    });
  });

  it("leaves scalar selections and false relations alone", () => {
    expect(scopeArgs("Project", "findMany", { select: { id: true, deployments: false } }, scope).select).toEqual({ id: true, deployments: false });
  });

  it("scopes _count selections", () => {
    const args = scopeArgs("User", "findMany", { select: { _count: { select: { memberships: true, deployments: { where: { status: "READY" } } } } } }, scope);
    expect(args.select).toEqual({
      _count: { select: { memberships: { where: { tenantId: A } }, deployments: { where: { status: "READY", tenantId: A } } } },
    });
  });

  it("scopes `_count: true` (every list relation counted within the tenant)", () => {
    const args = scopeArgs("User", "findMany", { include: { _count: true } }, scope);
    expect(args.include).toEqual({
      _count: { select: { memberships: { where: { tenantId: A } }, deployments: { where: { tenantId: A } } } },
    });
  });
});

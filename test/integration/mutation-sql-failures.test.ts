import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { quotaWindowKey } from "../../src/policy/quota.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { eventually } from "../helpers/eventually.ts";

/**
 * review W2-1: a mutation whose statement fails inside PostgreSQL answers
 * the field's coded error, never a masked INTERNAL_SERVER_ERROR, and
 * leaves nothing written, both as a single root field (no savepoint: the
 * request's transaction is rolled back, src/tenancy/mutation-changes.ts)
 * and with an Idempotency-Key (a savepoint; the refusal is stored).
 *
 * The foreign key: a project deleted while createWorkflow or
 * createDeployment waits to insert under it. The test's own connection
 * locks the project's row (FOR UPDATE); the mutation's insert waits for it
 * in its foreign-key check (seen in pg_locks), the test deletes the
 * project and commits, and the foreign key refuses the row (23503). Before the fix both
 * answered INTERNAL_SERVER_ERROR; now NOT_FOUND, as for a project that
 * was never there, with the window quota refunded. With an
 * Idempotency-Key the request has written its claim row before the
 * insert, and the delete's triggers then wait for the request while it
 * waits for them: PostgreSQL aborts the request's transaction (deadlock,
 * 40P01, Prisma's P2034). Before: INTERNAL_SERVER_ERROR; now
 * SERVICE_UNAVAILABLE (503, Retry-After: retryable), the key released, so
 * the retry with the same key runs afresh (NOT_FOUND: the project is gone).
 */
describe("a mutation's statement failing in PostgreSQL", () => {
  let t: TestApp;
  let acme: string;
  let token: string;

  beforeAll(async () => {
    t = await createTestApp();
    acme = (await tenantIdsBySlug(t)).acme!;
    token = await t.memberToken("acme", "OWNER");
  });
  afterAll(async () => t?.close());

  const auditCount = () => t.clients.platform.auditLogEntry.count({ where: { tenantId: acme } });

  const RACES = [
    ["createWorkflow", `mutation($p: ID!) { createWorkflow(input: { name: "w", projectId: $p }) { workflow { id } } }`],
    ["createDeployment", `mutation($p: ID!) { createDeployment(input: { projectId: $p, branch: "race" }) { deployment { id } } }`],
  ] as const;

  for (const [field, query] of RACES) {
    for (const keyed of [false, true]) {
      const outcome = keyed ? "a deadlock -> SERVICE_UNAVAILABLE, the key released" : "NOT_FOUND";
      it(`${field}${keyed ? " with an Idempotency-Key" : ""}: its project deleted while it waits to insert -> ${outcome}, nothing written`, async () => {
        const slug = `race-${field.toLowerCase()}-${keyed ? "k" : "n"}`;
        const project = await t.clients.platform.project.create({ data: { tenantId: acme, name: slug, slug } });
        const quotaKey = (id: string) => quotaWindowKey(id, "DEPLOYMENTS_PER_HOUR", Date.now());
        const quotaBefore = Number((await t.store.get(quotaKey(acme))) ?? 0);
        const audited = await auditCount();
        const holder = new pg.Client({ connectionString: t.db.url });
        await holder.connect();
        let answer: Awaited<ReturnType<TestApp["gql"]>>;
        let headers: Record<string, string> = {};
        try {
          await holder.query("BEGIN");
          // The row alone first (what the insert's foreign key check waits for); the delete once it waits.
          await holder.query("SELECT id FROM projects WHERE id = $1 FOR UPDATE", [project.id]);
          headers = keyed ? { "Idempotency-Key": `race-${field}-${Date.now()}` } : {};
          const pending = t.gql(query, { token, headers, variables: { p: toGlobalId("Project", project.id) } });
          await eventually("the insert waiting for the deleted project's row", async () => {
            const r = await holder.query(
              `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE NOT l.granted AND a.datname = current_database() AND a.pid <> pg_backend_pid()`,
            );
            return r.rows[0].n > 0;
          });
          await holder.query("DELETE FROM projects WHERE id = $1", [project.id]);
          await holder.query("COMMIT");
          answer = await pending;
        } finally {
          await holder.end();
        }
        expect(answer.body.data, JSON.stringify(answer.body)).toBeNull();
        expect(answer.body.errors).toHaveLength(1);
        if (keyed) {
          expect(answer.status).toBe(503);
          expect(answer.headers.get("retry-after")).toBe("2");
          expect(answer.body.errors![0]).toMatchObject({ path: [field], extensions: { code: "SERVICE_UNAVAILABLE", dependency: "postgres" } });
          // Not kept under the key: the retry runs, and finds no project.
          const retry = await t.gql(query, { token, headers, variables: { p: toGlobalId("Project", project.id) } });
          expect(retry.headers.get("idempotency-replayed")).toBeNull();
          expect(retry.body.errors?.[0]).toMatchObject({ path: [field], extensions: { code: "NOT_FOUND" } });
        } else {
          expect(answer.body.errors![0]).toMatchObject({ path: [field], extensions: { code: "NOT_FOUND" } });
        }
        expect(JSON.stringify(answer.body)).not.toMatch(/INSERT|foreign key|23503|40P01|deadlock|stack/i);
        expect(await t.clients.platform.workflow.count({ where: { tenantId: acme, projectId: project.id } })).toBe(0);
        expect(await t.clients.platform.deployment.count({ where: { tenantId: acme, projectId: project.id } })).toBe(0);
        expect(await auditCount()).toBe(audited);
        expect(Number((await t.store.get(quotaKey(acme))) ?? 0)).toBe(quotaBefore);
        // The connection went back clean: the next mutation is written.
        const next = await t.gql(`mutation { createProject(input: { name: "after ${slug}" }) { project { id } } }`, { token });
        expect(next.body.errors, JSON.stringify(next.body)).toBeUndefined();
      });
    }
  }

  it("a unique violation (Prisma's statement, a raw statement) answers BAD_USER_INPUT naming the field, nothing written", async () => {
    const taken = await t.clients.platform.project.findFirstOrThrow({ where: { tenantId: acme } });
    const audited = await auditCount();
    const dup = await t.gql(`mutation($i: CreateProjectInput!) { createProject(input: $i) { project { id } } }`, { token, variables: { i: { name: "dup", slug: taken.slug } } });
    expect(dup.body.errors?.[0]).toMatchObject({ extensions: { code: "BAD_USER_INPUT", field: "slug" } });
    const wayneOwner = await t.memberToken("wayne", "OWNER");
    const wayne = (await tenantIdsBySlug(t)).wayne!;
    await t.clients.platform.tenant.update({ where: { id: acme }, data: { idpIssuer: "https://taken.example.com", idpJwksUrl: "https://taken.example.com/jwks" } });
    const issuer = await t.gql(`mutation($i: SetTenantIdentityProviderInput!) { setTenantIdentityProvider(input: $i) { tenant { id } } }`, {
      token: wayneOwner,
      variables: { i: { tenantId: toGlobalId("Tenant", wayne), issuer: "https://taken.example.com", jwksUrl: "https://taken.example.com/jwks", audience: "api" } },
    });
    expect(issuer.body.errors?.[0]).toMatchObject({ extensions: { code: "BAD_USER_INPUT", field: "issuer" } });
    expect((await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: wayne } })).idpIssuer).toBeNull();
    expect(await auditCount()).toBe(audited);
  });
});

import { randomInt } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { quotaWindowKey } from "../../src/policy/quota.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { testServerUrl } from "../helpers/db.ts";
import { BLOCKED_BY_ME, eventually } from "../helpers/eventually.ts";


type Answer = Awaited<ReturnType<TestApp["gql"]>>;
interface RaceRun {
  project: { id: string; slug: string };
  quotaBefore: number;
  audited: number;
  headers: Record<string, string>;
  answer: Answer;
}

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
  const quotaKey = (id: string) => quotaWindowKey(id, "DEPLOYMENTS_PER_HOUR", Date.now());

  const RACES = [
    ["createWorkflow", `mutation($p: ID!) { createWorkflow(input: { name: "w", projectId: $p }) { workflow { id } } }`],
    ["createDeployment", `mutation($p: ID!) { createDeployment(input: { projectId: $p, branch: "race" }) { deployment { id } } }`],
  ] as const;

  /** A backend of the server waiting on a lock all along, as another test file's often is in CI (see `untilBlockedBy`). */
  let neighbour: { owner: pg.Client; waiter: pg.Client; waiting: Promise<unknown> } | undefined;
  beforeAll(async () => {
    const owner = new pg.Client({ connectionString: testServerUrl() });
    const waiter = new pg.Client({ connectionString: testServerUrl() });
    await owner.connect();
    await waiter.connect();
    const key = randomInt(1, 2 ** 47);
    await owner.query("SELECT pg_advisory_lock($1)", [key]);
    neighbour = { owner, waiter, waiting: waiter.query("SELECT pg_advisory_lock($1)", [key]).catch(() => undefined) };
    await eventually("the neighbour's lock wait", async () => (await owner.query(BLOCKED_BY_ME)).rows.length > 0);
  });
  afterAll(async () => {
    await neighbour?.owner.end();
    await neighbour?.waiting;
    await neighbour?.waiter.end();
  });

  /**
   * Waits until PostgreSQL shows a backend blocked by `holder`'s locks: the
   * mutation's insert waiting for the project's row. Asked with
   * pg_blocking_pids, not pg_stat_activity: inside the holder's transaction
   * that view is a snapshot taken at its first read, so a backend connected
   * after it never appears in it (the request's, when its tier pool had no
   * idle connection: the file's first race). The poll joined pg_locks with
   * it, and the join first read it only once some backend of the server
   * waited on a lock, another test file's: then the test waited 15 s for a
   * request that was waiting in PostgreSQL all along (CI on main; about 1
   * run in 10 with two loops of the file in parallel; every time with a
   * neighbour's lock wait and the first race first). Fails at once if the
   * request answers instead, and on a timeout says where it was.
   */
  async function untilBlockedBy(holder: pg.Client, request: Promise<Answer>): Promise<void> {
    let answered: string | undefined;
    request.then(
      (a) => (answered = `${a.status} ${JSON.stringify(a.body)}`),
      (err: unknown) => (answered = String(err)),
    );
    try {
      await eventually("the mutation's insert waiting for the project's row the test locked", async () => {
        if (answered !== undefined) return true;
        return (await holder.query(BLOCKED_BY_ME)).rows.length > 0;
      });
    } catch (err) {
      await holder.query("SELECT pg_stat_clear_snapshot()");
      const { rows } = await holder.query(
        "SELECT pid, usename, state, wait_event_type, wait_event, left(query, 100) AS query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
      );
      const pools = Object.entries(t.clients.pools).map(([name, p]) => `${name} ${p.totalCount} connections (${p.idleCount} idle), ${p.waitingCount} waiting`);
      throw new Error(`${(err as Error).message}; the request has not answered; the test database's backends: ${JSON.stringify(rows)}; the app's pools: ${pools.join("; ")}`);
    }
    if (answered !== undefined) throw new Error(`the mutation answered before it waited for the project's row: ${answered}`);
  }

  /**
   * One race: the project's row locked, the mutation sent, the project
   * deleted once the insert waits for it. Undefined when PostgreSQL made the
   * test's DELETE the deadlock's victim (with a key): it aborts the side
   * whose deadlock check runs after the cycle formed, one check per wait,
   * deadlock_timeout (1 s) after it began. The request's comes first when
   * the DELETE follows its wait within that second; when the test's poll
   * lagged longer (a loaded machine), the request's check had found no
   * cycle yet, the test's found it, and the request went on and inserted.
   */
  async function race(field: string, query: string, keyed: boolean, attempt: number): Promise<RaceRun | undefined> {
    const slug = `race-${field.toLowerCase()}-${keyed ? "k" : "n"}-${attempt}`;
    const project = await t.clients.platform.project.create({ data: { tenantId: acme, name: slug, slug } });
    const quotaBefore = Number((await t.store.get(quotaKey(acme))) ?? 0);
    const audited = await auditCount();
    const headers: Record<string, string> = keyed ? { "Idempotency-Key": `race-${field}-${Date.now()}-${attempt}` } : {};
    const holder = new pg.Client({ connectionString: t.db.url });
    await holder.connect();
    try {
      await holder.query("BEGIN");
      // The row alone first (what the insert's foreign key check waits for); the delete once it waits.
      await holder.query("SELECT id FROM projects WHERE id = $1 FOR UPDATE", [project.id]);
      const pending = t.gql(query, { token, headers, variables: { p: toGlobalId("Project", project.id) } });
      await untilBlockedBy(holder, pending);
      try {
        await holder.query("DELETE FROM projects WHERE id = $1", [project.id]);
      } catch (err) {
        if (!keyed || (err as { code?: string }).code !== "40P01") throw err;
        await holder.query("ROLLBACK");
        await pending;
        return undefined;
      }
      await holder.query("COMMIT");
      return { project, quotaBefore, audited, headers, answer: await pending };
    } finally {
      await holder.end();
    }
  }

  for (const [field, query] of RACES) {
    for (const keyed of [false, true]) {
      const outcome = keyed ? "a deadlock -> SERVICE_UNAVAILABLE, the key released" : "NOT_FOUND";
      it(`${field}${keyed ? " with an Idempotency-Key" : ""}: its project deleted while it waits to insert -> ${outcome}, nothing written`, async () => {
        let run: RaceRun | undefined;
        for (let attempt = 1; !run; attempt++) {
          if (attempt > 3) throw new Error("PostgreSQL made the test's DELETE the deadlock's victim 3 times: the request's deadlock check always ran before the DELETE waited");
          run = await race(field, query, keyed, attempt);
        }
        const { project, quotaBefore, audited, headers, answer } = run;
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
        const next = await t.gql(`mutation { createProject(input: { name: "after ${project.slug}" }) { project { id } } }`, { token });
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

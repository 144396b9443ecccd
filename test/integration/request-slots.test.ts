import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RequestConnection, RequestSlots, requestSlotsOf, type RequestSlot } from "../../src/db/request-slots.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { TenantDb } from "../../src/tenancy/tenant-db.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";

/**
 * The request transaction of a query operation is a plain connection held
 * by a request slot (src/db/clients.ts, src/tenancy/tenant-db.ts). These
 * tests load it the way production does: many concurrent requests of
 * different tenants, more than there are slots, with the unique lookups
 * that Prisma batches per client (node, nodes, relation fallbacks).
 */
describe("request slots", () => {
  let t: TestApp;
  const tenants: Record<string, { token: string; projects: string[]; deployments: string[] }> = {};

  beforeAll(async () => {
    t = await createTestApp();
    for (const slug of ["acme", "globex", "wayne"]) {
      const tenant = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug } });
      const projects = await t.clients.platform.project.findMany({ where: { tenantId: tenant.id }, select: { id: true } });
      const deployments = await t.clients.platform.deployment.findMany({ where: { tenantId: tenant.id }, select: { id: true }, take: 5 });
      tenants[slug] = {
        token: await t.memberToken(slug, "VIEWER"),
        projects: projects.map((p) => toGlobalId("Project", p.id)),
        deployments: deployments.map((d) => toGlobalId("Deployment", d.id)),
      };
      expect(projects.length).toBeGreaterThan(1);
      expect(deployments.length).toBeGreaterThan(1);
    }
  });
  afterAll(async () => {
    await t?.close();
  });

  const LOOKUPS = `query($id: ID!, $ids: [ID!]!, $d: ID!) {
    node(id: $id) { id ... on Project { name } }
    nodes(ids: $ids) { id }
    deployment: node(id: $d) { id ... on Deployment { project { id } } }
  }`;

  it("concurrent requests of three tenants, 5x more than slots, each see exactly their own rows", async () => {
    const slugs = Object.keys(tenants);
    const n = requestSlotsOf(t.clients.app)!.max * 5;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const slug = slugs[i % slugs.length]!;
        const own = tenants[slug]!;
        const other = tenants[slugs[(i + 1) % slugs.length]!]!;
        // Own ids and another tenant's, in the same batch of lookups.
        const ids = [own.projects[0]!, other.projects[0]!, own.projects[1]!];
        return t
          .gql(LOOKUPS, { token: own.token, variables: { id: own.projects[i % own.projects.length], ids, d: own.deployments[0] } })
          .then((res) => ({ res, own, ids }));
      }),
    );
    for (const { res, own, ids } of results) {
      expect(res.body.errors).toBeUndefined();
      expect(res.body.data.node?.id).toMatch(/.+/);
      expect(own.projects).toContain(res.body.data.node.id);
      // Own ids resolve, the other tenant's is null, in order.
      expect(res.body.data.nodes.map((x: { id: string } | null) => x?.id ?? null)).toEqual([ids[0], null, ids[2]]);
      expect(own.projects).toContain(res.body.data.deployment.project.id);
    }
  });

  it("lookups Prisma cannot merge (several User nodes) run inside the request's transaction", async () => {
    // Found by the isolation model: nodes(ids: [User, User]) was a 500
    // ("no transactions on a request slot"), Prisma running the batch as a
    // transaction of its own.
    const acme = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    const members = await t.clients.platform.membership.findMany({ where: { tenantId: acme.id }, include: { user: true }, orderBy: { id: "asc" } });
    const outsider = await t.clients.platform.user.findUniqueOrThrow({ where: { email: "owner@globex.test" } });
    const ids = [...members.map((m) => toGlobalId("User", m.userId)), toGlobalId("User", outsider.id)];
    const res = await t.gql(`query($ids: [ID!]!) { nodes(ids: $ids) { id ... on User { email } } }`, { token: tenants.acme!.token, variables: { ids } });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.nodes).toEqual([...members.map((m) => ({ id: toGlobalId("User", m.userId), email: m.user.email })), null]);
  });

  it("two unmergeable batches of one request (Users and Tenants in one nodes list) take turns on its connection", async () => {
    // Found by the isolation model (seed 882063227): Prisma ran the User
    // lookups and the Tenant lookups as two batch transactions of one
    // request, interleaved on its connection; their savepoints nested and
    // the first RELEASE destroyed the second ("savepoint prisma_batch_3
    // does not exist"), a 500.
    const acme = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    const members = await t.clients.platform.membership.findMany({ where: { tenantId: acme.id }, orderBy: { id: "asc" }, take: 2 });
    expect(members).toHaveLength(2);
    const [u1, u2] = members.map((m) => toGlobalId("User", m.userId));
    const own = toGlobalId("Tenant", acme.id);
    const globex = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "globex" } });
    const outsider = await t.clients.platform.user.findUniqueOrThrow({ where: { email: "owner@globex.test" } });
    const foreignUser = toGlobalId("User", outsider.id);
    const foreign = toGlobalId("Tenant", globex.id);
    for (const ids of [
      [u1!, own, u2!, own, own],
      [foreignUser, foreign, u1!, own, own],
      [u1!, foreign, foreignUser, own, own],
      [foreignUser, own, u2!, foreign, foreign],
    ]) {
      const res = await t.gql(`query($ids: [ID!]!) { nodes(ids: $ids) { __typename id ... on User { email } ... on Tenant { slug } } }`, { token: tenants.acme!.token, variables: { ids } });
      expect(res.body.errors).toBeUndefined();
    }
  });

  it("a request whose statement fails gives its slot and connection back", async () => {
    const acme = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    const slots = requestSlotsOf(t.clients.app)!;
    const open = () => new TenantDb(t.clients.app, { tenantId: acme.id, statementTimeoutMs: 0, mode: "request" });
    // More failing requests than slots: a leak would exhaust them.
    for (let i = 0; i < slots.max * 2; i++) {
      const db = open();
      await expect(db.queryRaw(Prisma.sql`SELECT 1 / 0`)).rejects.toThrow(/division by zero/);
      // The transaction is aborted: later statements of the request fail too, and nothing hangs.
      await expect(db.client.project.count()).rejects.toThrow();
      await db.finish();
    }
    // Every slot is free: as many as there are can be held at once, right away.
    const held = await Promise.all(Array.from({ length: slots.max }, () => slots.acquire()));
    held.forEach((s) => slots.release(s));
    // And the connections went back to the pool clean: a new request reads normally.
    const db = open();
    expect(await db.client.project.count()).toBeGreaterThan(0);
    const [row] = await db.queryRaw<{ tenant: string }>(Prisma.sql`SELECT current_setting('app.tenant_id') AS tenant`);
    expect(row?.tenant).toBe(acme.id);
    await db.finish();
    // A finished request cannot reopen a transaction (nothing would close it).
    await expect(db.client.project.count()).rejects.toThrow(/ended/);
  });

  it("a query operation reads one snapshot: a row removed mid-request is still there for its later statements", async () => {
    // Found by the chaos run: a members page, then its users' lookup in a
    // later statement; a removeMember committed in between left a membership
    // whose user was no longer visible (a 500). A query is one REPEATABLE
    // READ snapshot; under READ COMMITTED the second count would be lower.
    const acme = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    const project = await t.clients.platform.project.create({ data: { tenantId: acme.id, name: "snapshot-probe", slug: "snapshot-probe" } });
    const count = Prisma.sql`SELECT count(*)::int AS n FROM projects WHERE tenant_id = ${acme.id}::uuid`;
    const db = new TenantDb(t.clients.app, { tenantId: acme.id, statementTimeoutMs: 0, mode: "request" });
    let before: number;
    try {
      before = (await db.queryRaw<{ n: number }>(count))[0]!.n;
      await t.clients.platform.project.delete({ where: { tenantId_id: { tenantId: acme.id, id: project.id } } });
      expect((await db.queryRaw<{ n: number }>(count))[0]!.n).toBe(before);
    } finally {
      await db.finish();
    }
    // The next request sees the removal.
    const fresh = new TenantDb(t.clients.app, { tenantId: acme.id, statementTimeoutMs: 0, mode: "request" });
    const now = (await fresh.queryRaw<{ n: number }>(count))[0]!.n;
    await fresh.finish();
    expect(now).toBe(before - 1);
  });

  it("a finish called twice at once ends its transaction once: the connection's next holder keeps it", async () => {
    // A stream's last event and its end both finish the event's scope. Before,
    // the second COMMIT and release reached the request handed the connection
    // in between: its connection went back to the pool while it used it.
    const acme = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    const pool = t.clients.appPools.PRO;
    // Every connection of the tier but one held: the second request gets the one the first gives back.
    const others = await Promise.all(Array.from({ length: pool.options.max - 1 }, () => pool.connect()));
    try {
      const open = () => new TenantDb(t.clients.app, { tenantId: acme.id, plan: "PRO", statementTimeoutMs: 0, mode: "request" });
      const first = open();
      await first.queryRaw(Prisma.sql`SELECT 1`);
      const second = open();
      const opened = second.queryRaw(Prisma.sql`SELECT 1`);
      await Promise.all([first.finish(), first.finish()]);
      await opened;
      // The second request still holds its connection, inside its transaction with its settings.
      expect(pool.idleCount).toBe(0);
      const [row] = await second.queryRaw<{ tenant: string; inTransaction: boolean }>(
        Prisma.sql`SELECT current_setting('app.tenant_id', true) AS tenant, now() <> statement_timestamp() AS "inTransaction"`,
      );
      expect(row).toEqual({ tenant: acme.id, inTransaction: true });
      await second.finish();
      expect(pool.idleCount).toBe(1);
    } finally {
      others.forEach((c) => c.release());
    }
  });

  it("the tenant setting does not outlive the request on its pooled connection", async () => {
    const acme = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    for (let i = 0; i < requestSlotsOf(t.clients.app)!.max; i++) {
      const db = new TenantDb(t.clients.app, { tenantId: acme.id, statementTimeoutMs: 0, mode: "request" });
      await db.queryRaw(Prisma.sql`SELECT 1`);
      await db.finish();
    }
    // Whatever connection the pool hands out next carries no tenant.
    const clients = await Promise.all(Array.from({ length: 3 }, () => t.clients.appPools.PRO.connect()));
    try {
      for (const c of clients) {
        const { rows } = await c.query("SELECT coalesce(current_setting('app.tenant_id', true), '') AS tenant, (SELECT count(*)::int FROM projects) AS visible");
        expect(rows[0]).toEqual({ tenant: "", visible: 0 });
      }
    } finally {
      clients.forEach((c) => c.release());
    }
  });

  it("lets a slot idle for idleMs go (its client with it), keeps the last one, and makes slots again on need", async () => {
    const clock = new ManualClock();
    const slots = new RequestSlots(t.clients.appPools.PRO, 4, { idleMs: 30_000, now: clock.now });
    // Each slot runs a query on a real connection of the pool, as a request's would.
    const query = async (slot: RequestSlot) => {
      const connection = await t.clients.appPools.PRO.connect();
      slot.pool.connection = new RequestConnection(connection);
      try {
        const rows = await slot.prisma.$queryRawUnsafe<{ one: number }[]>("SELECT 1 AS one");
        expect(rows).toEqual([{ one: 1 }]);
      } finally {
        slot.pool.connection = undefined;
        connection.release();
      }
    };
    try {
      const a = await slots.acquire();
      // One slot: nothing to sweep, no timer (a RequestSlots nobody uses any more is not kept alive by one).
      expect(slots.sweeping).toBe(false);
      const [b, c] = await Promise.all([slots.acquire(), slots.acquire()]);
      expect(slots.sweeping).toBe(true);
      for (const slot of [a, b!, c!]) await query(slot);
      expect(slots.made).toBe(3);
      slots.release(a);
      clock.advance(10_000);
      slots.release(b!);
      clock.advance(10_000);
      slots.release(c!);
      clock.advance(9_999);
      slots.sweep();
      expect(slots.made).toBe(3);
      clock.advance(1);
      slots.sweep();
      expect(slots.made).toBe(2);
      clock.advance(60_000);
      slots.sweep();
      // The last one stays: the most recently released; the timer stops.
      expect(slots.made).toBe(1);
      expect(slots.sweeping).toBe(false);
      const again = await slots.acquire();
      expect(again).toBe(c);
      const made = await slots.acquire();
      expect(made).not.toBe(a);
      expect(made).not.toBe(b);
      expect(slots.made).toBe(2);
      await query(made);
      // A slot lent out is never let go, however long it is held.
      clock.advance(120_000);
      slots.sweep();
      expect(slots.made).toBe(2);
      slots.release(again);
      slots.release(made);
      expect(slots.sweeping).toBe(true);
    } finally {
      await slots.close();
    }
    expect(slots.sweeping).toBe(false);
  });

  it("sweeps running among concurrent borrowers never take a lent slot: every query lands on its own borrower's connection", async () => {
    const clock = new ManualClock();
    const slots = new RequestSlots(t.clients.appPools.PRO, 3, { idleMs: 1_000, now: clock.now });
    let sweeps = 0;
    let running = true;
    // A sweep between every turn of the borrowers, the clock moved past idleMs each time.
    const sweeper = (async () => {
      while (running) {
        clock.advance(1_001);
        slots.sweep();
        sweeps++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    // Rounds of 3 borrowers (the pool's connections allow it), each on a connection marked as its own, all
    // asking for a slot in the same tick so a slot handed to two of them would show: a query on another's connection.
    const round = async (r: number) => {
      const connections = await Promise.all([0, 1, 2].map(() => t.clients.appPools.PRO.connect()));
      try {
        // Transaction-local, as a request's settings are (so it holds behind PgBouncer in transaction mode too).
        await Promise.all(connections.map((c, i) => c.query(`BEGIN; SELECT set_config('app.slot_marker', 'r${r}c${i}', true)`)));
        await Promise.all(
          connections.map(async (connection, i) => {
            const slot = await slots.acquire();
            slot.pool.connection = new RequestConnection(connection);
            try {
              const rows = await slot.prisma.$queryRawUnsafe<{ m: string }[]>("SELECT current_setting('app.slot_marker') AS m");
              expect(rows).toEqual([{ m: `r${r}c${i}` }]);
            } finally {
              slots.release(slot);
            }
          }),
        );
      } finally {
        await Promise.all(connections.map((c) => c.query("COMMIT").catch(() => {})));
        connections.forEach((c) => c.release());
      }
    };
    try {
      for (let r = 0; r < 20; r++) await round(r);
    } finally {
      running = false;
      await sweeper;
      await slots.close();
    }
    expect(sweeps).toBeGreaterThan(10);
    expect(slots.made).toBeLessThanOrEqual(3);
  });
});

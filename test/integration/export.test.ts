import { randomBytes } from "node:crypto";
import v8 from "node:v8";
import vm from "node:vm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { hashApiKey } from "../../src/tenancy/credentials.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { tenantRows } from "../helpers/placements.ts";

/**
 * SPEC section 3, issue 6 point 5: GET /export streams NDJSON of every row
 * the tenant owns, for its OWNER or an audited platform admin
 * (?tenant=<slug>, PENDING_DELETION tenants included), in constant memory.
 */

interface ExportResult {
  status: number;
  contentType: string | null;
  counts: Record<string, number>;
  lines: number;
  sample: Record<string, any[]>;
  last: any;
  peak: { rss: number; heapUsed: number };
  /** heapUsed right after a forced GC, sampled while streaming: what the stream really retains. */
  retained: number[];
}

// A forced GC separates live memory from garbage not yet collected.
v8.setFlagsFromString("--expose-gc");
const forceGc = vm.runInNewContext("gc") as () => void;

describe("GET /export", () => {
  let t: TestApp;
  let acmeId: string;
  let owner: pg.Client;
  let keySecret: string;

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    acmeId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
    owner = new pg.Client({ connectionString: t.db.url });
    await owner.connect();
    keySecret = `tg_${randomBytes(24).toString("hex")}`;
    await owner.query(`INSERT INTO api_keys (tenant_id, name, role, prefix, secret_hash) VALUES ($1, 'ci', 'ADMIN', $2, $3)`, [
      acmeId,
      keySecret.slice(0, 10),
      hashApiKey(keySecret),
    ]);
  });
  afterAll(async () => {
    await owner?.end();
    await t?.close();
    await t?.store.close();
  });

  /** Reads the stream line by line, keeping only counts and a few samples (and sampling memory). */
  async function runExport(path: string, headers: Record<string, string>): Promise<ExportResult> {
    const res = await t.app.fetch(`http://localhost${path}`, { headers });
    const result: ExportResult = {
      status: res.status,
      contentType: res.headers.get("content-type"),
      counts: {},
      lines: 0,
      sample: {},
      last: null,
      peak: { rss: 0, heapUsed: 0 },
      retained: [],
    };
    if (res.status !== 200 || !res.body) {
      result.last = await res.json().catch(() => null);
      return result;
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let rest = "";
    let chunks = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += decoder.decode(value, { stream: true });
      const parts = rest.split("\n");
      rest = parts.pop()!;
      for (const part of parts) {
        if (!part) continue;
        const obj = JSON.parse(part);
        result.lines++;
        result.counts[obj.type] = (result.counts[obj.type] ?? 0) + 1;
        const s = (result.sample[obj.type] ??= []);
        if (s.length < 3) s.push(obj);
        result.last = obj;
      }
      const m = process.memoryUsage();
      result.peak.rss = Math.max(result.peak.rss, m.rss);
      result.peak.heapUsed = Math.max(result.peak.heapUsed, m.heapUsed);
      if (++chunks % 20 === 0) {
        forceGc();
        result.retained.push(process.memoryUsage().heapUsed);
      }
    }
    expect(rest).toBe("");
    return result;
  }

  it("the OWNER gets every row of the tenant as NDJSON, each with a type, no secret hashes", async () => {
    const exportsAudited = async () =>
      (await owner.query(`SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1 AND action = 'tenant.export'`, [acmeId])).rows[0].n as number;
    const auditedBefore = await exportsAudited();
    const r = await runExport("/export", { authorization: `Bearer ${await t.memberToken("acme", "OWNER")}` });
    expect(r.status).toBe(200);
    expect(r.contentType).toBe("application/x-ndjson");
    const direct = async (table: string) =>
      (await owner.query(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = $1`, [acmeId])).rows[0].n as number;
    expect(r.counts.Tenant).toBe(1);
    expect(r.counts.Membership).toBe(await direct("memberships"));
    expect(r.counts.Project).toBe(await direct("projects"));
    expect(r.counts.Deployment).toBe(await direct("deployments"));
    expect(r.counts.Workflow).toBe(await direct("workflows"));
    expect(r.counts.ApiKey).toBe(1);
    // The export's own audit entry is written before the rows are read, so it is in the export.
    expect(r.counts.AuditLogEntry).toBe(await direct("audit_log"));
    expect(r.sample.Tenant![0]).toMatchObject({ type: "Tenant", id: acmeId, slug: "acme" });
    expect(r.sample.Membership![0].userEmail).toMatch(/@acme\.test$/);
    const key = r.sample.ApiKey![0];
    expect(key).toMatchObject({ type: "ApiKey", name: "ci", role: "ADMIN" });
    expect(Object.keys(key)).not.toContain("secretHash");
    expect(JSON.stringify(r.sample)).not.toContain(hashApiKey(keySecret));
    expect(r.last).toEqual({ type: "ExportComplete", rows: r.lines - 1 });
    // Nothing of another tenant.
    const others = (await owner.query(`SELECT id::text FROM projects WHERE tenant_id <> $1`, [acmeId])).rows.map((x) => x.id);
    expect(r.sample.Project!.some((p) => others.includes(p.id))).toBe(false);
    // Exactly one entry for this export (other tests of the file export acme too, in any order).
    expect(await exportsAudited()).toBe(auditedBefore + 1);
  });

  it("ADMIN members, API keys and strangers are refused", async () => {
    const admin = await runExport("/export", { authorization: `Bearer ${await t.memberToken("acme", "ADMIN")}` });
    expect(admin.status).toBe(403);
    expect(admin.last.errors[0].extensions.code).toBe("FORBIDDEN");
    const key = await runExport("/export", { "x-api-key": keySecret });
    expect(key.status).toBe(403);
    const none = await runExport("/export", {});
    expect(none.last.errors[0].extensions.code).toMatch(/UNAUTHENTICATED|TENANT_REQUIRED/);
    // ?tenant= is for platform admins only: an OWNER of acme cannot export globex with it.
    const other = await runExport("/export?tenant=globex", { authorization: `Bearer ${await t.memberToken("acme", "OWNER")}` });
    expect(other.status).toBe(403);
  });

  it("a platform admin exports any tenant with ?tenant=<slug>, audited (the tenant sees it), PENDING_DELETION included", async () => {
    const globex = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "globex" } });
    const token = await t.adminToken();
    const sched = await t.gql(`mutation S($id: ID!) { scheduleTenantDeletion(input: { tenantId: $id }) { tenant { status } } }`, {
      token,
      variables: { id: toGlobalId("Tenant", globex.id) },
    });
    expect(sched.body.data.scheduleTenantDeletion.tenant.status).toBe("PENDING_DELETION");
    const r = await runExport("/export?tenant=globex", { authorization: `Bearer ${token}` });
    expect(r.status).toBe(200);
    expect(r.sample.Tenant![0]).toMatchObject({ slug: "globex", status: "PENDING_DELETION" });
    // globex's rows and its own log, where they live (its placement under TEST_PLACEMENTS=spread).
    const globexDb = await tenantRows(t.clients, globex.id);
    expect(r.counts.Project).toBe(await globexDb.project.count({ where: { tenantId: globex.id } }));
    const platformEntry = await owner.query(`SELECT count(*)::int AS n FROM platform_audit_log WHERE action = 'tenant.export' AND $1 = ANY(tenant_ids)`, [globex.id]);
    expect(platformEntry.rows[0].n).toBe(1);
    expect(await globexDb.auditLogEntry.count({ where: { tenantId: globex.id, action: "tenant.export", crossTenant: true } })).toBe(1);
    const unknown = await runExport("/export?tenant=nope-nope", { authorization: `Bearer ${token}` });
    expect(unknown.status).toBe(404);
  });

  it("streams 100,000 rows in constant memory", async () => {
    const project = (await owner.query(`SELECT id FROM projects WHERE tenant_id = $1 LIMIT 1`, [acmeId])).rows[0].id;
    await owner.query(
      `INSERT INTO deployments (tenant_id, project_id, status, branch, commit_sha, url)
       SELECT $1, $2, 'READY', 'bulk-' || i, md5(i::text), 'https://d' || i || '.example.dev'
       FROM generate_series(1, 100000) i`,
      [acmeId, project],
    );
    // Order-free: the other tests export acme too, and must not stream these rows (30 s each under load).
    onTestFinished(async () => {
      await owner.query(`DELETE FROM deployments WHERE tenant_id = $1 AND branch LIKE 'bulk-%'`, [acmeId]);
    });
    // Fresh statistics, as autovacuum would gather after a bulk load (else the planner expects a few rows).
    await owner.query(`ANALYZE deployments`);
    forceGc();
    const before = process.memoryUsage();
    const started = performance.now();
    const r = await runExport("/export", { authorization: `Bearer ${await t.memberToken("acme", "OWNER")}` });
    const ms = performance.now() - started;
    forceGc();
    const after = process.memoryUsage();
    expect(r.status).toBe(200);
    expect(r.counts.Deployment).toBeGreaterThanOrEqual(100_000);
    expect(r.last.type).toBe("ExportComplete");
    const mb = (n: number) => Math.round((n / 1048576) * 10) / 10;
    const figure = {
      rows: r.lines,
      ms: Math.round(ms),
      rssBeforeMB: mb(before.rss),
      rssPeakMB: mb(r.peak.rss),
      rssAfterMB: mb(after.rss),
      heapBeforeMB: mb(before.heapUsed),
      heapPeakMB: mb(r.peak.heapUsed),
      heapAfterMB: mb(after.heapUsed),
      retainedDuringMB: r.retained.map((x) => mb(x - before.heapUsed)),
    };
    console.log("export memory:", JSON.stringify(figure));
    // 100,000 rows are ~40 MB of NDJSON. Live memory while streaming stays at a few batches,
    // and does not grow with the rows streamed: the last sample is no larger than the first.
    expect(r.retained.length).toBeGreaterThanOrEqual(4);
    for (const x of r.retained) expect(x - before.heapUsed).toBeLessThan(16 * 1048576);
    expect(r.retained.at(-1)! - r.retained[0]!).toBeLessThan(4 * 1048576);
  }, 240_000);
});

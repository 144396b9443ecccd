import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/infra/logger.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * SPEC section 3, issue 6 point 6: GET /metrics (Prometheus text, per-tenant
 * series labelled with the tenant id, process and pool metrics, Bearer
 * METRICS_TOKEN) and one structured log line per request without secrets.
 */

const METRICS_TOKEN = "metrics-token-0123456789";

function sample(text: string, name: string, labels: Record<string, string>): number {
  const lines = text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  const match = lines.find((l) => Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
  return match ? Number(match.slice(match.lastIndexOf(" ") + 1)) : 0;
}

describe("metrics and request logs", () => {
  let t: TestApp;
  const logLines: any[] = [];
  let acmeId: string;
  let globexId: string;

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const line of String(chunk).split("\n")) if (line.trim()) logLines.push(JSON.parse(line));
        cb();
      },
    });
    t = await createTestApp({ store: isolatedStore(), metricsToken: METRICS_TOKEN, logger: createLogger("info", sink) });
    acmeId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
    globexId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "globex" } })).id;
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  const scrape = async (token: string | null = METRICS_TOKEN) => {
    const res = await t.app.fetch("http://localhost/metrics", { headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
  };

  it("is guarded by METRICS_TOKEN: 401 without it or with a wrong one", async () => {
    expect((await scrape(null)).status).toBe(401);
    expect((await scrape("wrong")).status).toBe(401);
    const ok = await scrape();
    expect(ok.status).toBe(200);
    expect(ok.type).toMatch(/^text\/plain/);
  });

  it("counts requests, latency and error codes per tenant id", async () => {
    const before = (await scrape()).text;
    const acme = await t.memberToken("acme", "VIEWER");
    for (let i = 0; i < 3; i++) await t.gql(`{ tenant { slug } }`, { token: acme });
    // A VIEWER trying an ADMIN field: FORBIDDEN, counted for acme.
    await t.gql(`{ auditLog(first: 1) { totalCount } }`, { token: acme });
    await t.gql(`{ tenant { slug } }`, { token: await t.memberToken("globex", "VIEWER") });
    const after = (await scrape()).text;
    const delta = (name: string, labels: Record<string, string>) => sample(after, name, labels) - sample(before, name, labels);
    expect(delta("tenantgraph_requests_total", { tenant: acmeId, status: "200" })).toBe(4);
    expect(delta("tenantgraph_requests_total", { tenant: globexId, status: "200" })).toBe(1);
    expect(delta("tenantgraph_errors_total", { tenant: acmeId, code: "FORBIDDEN" })).toBe(1);
    expect(delta("tenantgraph_request_duration_seconds_count", { tenant: acmeId })).toBe(4);
    expect(after).toMatch(new RegExp(`tenantgraph_request_duration_seconds_bucket\\{le="0\\.1",tenant="${acmeId}"\\}`));
    // Labels are ids, never slugs or names.
    expect(after).not.toMatch(/tenant="acme"/);
  });

  it("counts rate-limit rejections per tenant", async () => {
    const before = (await scrape()).text;
    const id = Buffer.from(`Tenant:${globexId}`).toString("base64");
    const set = await t.gql(`mutation L($id: ID!) { setTenantLimits(input: { tenantId: $id, limits: [{ resource: API_REQUESTS_PER_MINUTE, limit: 1 }] }) { tenant { slug } } }`, {
      token: await t.adminToken(),
      variables: { id },
    });
    expect(set.body.errors).toBeUndefined();
    const token = await t.memberToken("globex", "VIEWER");
    let limited = 0;
    try {
      for (let i = 0; i < 4; i++) if ((await t.gql(`{ tenant { slug } }`, { token })).status === 429) limited++;
    } finally {
      // globex back to its plan's limit (cache evicted): the other tests' requests are not limited.
      await t.clients.platform.tenantLimitOverride.deleteMany({ where: { tenantId: globexId } });
      await new Directory(t.clients.platform, t.store).invalidateTenant(globexId, "globex");
    }
    expect(limited).toBeGreaterThanOrEqual(3);
    const after = (await scrape()).text;
    const delta = (name: string, labels: Record<string, string>) => sample(after, name, labels) - sample(before, name, labels);
    expect(delta("tenantgraph_rate_limit_rejections_total", { tenant: globexId })).toBe(limited);
    expect(delta("tenantgraph_errors_total", { tenant: globexId, code: "RATE_LIMITED" })).toBe(limited);
    expect(delta("tenantgraph_requests_total", { tenant: globexId, status: "429" })).toBe(limited);
  });

  it("counts quota rejections per tenant (QUOTA_EXCEEDED)", async () => {
    const before = (await scrape()).text;
    // globex is FREE: 3 projects at most; it has 2.
    const token = await t.memberToken("globex", "DEVELOPER");
    await t.clients.platform.tenantLimitOverride.deleteMany({ where: { tenantId: globexId } });
    await t.clients.platform.tenant.update({ where: { id: globexId }, data: { updatedAt: new Date() } });
    const tenant = await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: globexId } });
    await new Directory(t.clients.platform, t.store).invalidateTenant(globexId, tenant.slug);
    const codes: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await t.gql(`mutation { createProject(input: { name: "Quota ${i}" }) { project { id } } }`, { token });
      codes.push(res.body.errors?.[0]?.extensions?.code ?? "OK");
    }
    expect(codes).toContain("QUOTA_EXCEEDED");
    const after = (await scrape()).text;
    const rejected = codes.filter((c) => c === "QUOTA_EXCEEDED").length;
    expect(sample(after, "tenantgraph_quota_rejections_total", { tenant: globexId }) - sample(before, "tenantgraph_quota_rejections_total", { tenant: globexId })).toBe(rejected);
  });

  it("counts directory cache hits and misses, and exposes process and pool metrics", async () => {
    const token = await t.memberToken("wayne", "VIEWER");
    await t.gql(`{ tenant { slug } }`, { token });
    await t.gql(`{ tenant { slug } }`, { token });
    const text = (await scrape()).text;
    expect(text).toMatch(/tenantgraph_cache_misses_total\{cache="[a-z]+",tenant="[^"]+"\} \d+/);
    expect(text).toMatch(/tenantgraph_cache_hits_total\{cache="info",tenant="[0-9a-f-]{36}"\} \d+/);
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    expect(text).toMatch(/tenantgraph_db_pool_connections\{pool="app_pro",state="total"\} \d+/);
    expect(text).toMatch(/tenantgraph_db_pool_connections\{pool="platform",state="waiting"\} \d+/);
  });

  it("logs one line per request: request id, tenant id, operation name, status, duration; never the token", async () => {
    const token = await t.memberToken("acme", "VIEWER");
    logLines.length = 0;
    const res = await t.gql(`query TenantSlug { tenant { slug } }`, { token, headers: { "x-request-id": "req-log-test-1" } });
    expect(res.status).toBe(200);
    const lines = logLines.filter((l) => l.requestId === "req-log-test-1");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: "request", tenantId: acmeId, operationName: "TenantSlug", status: 200, method: "POST", path: "/graphql" });
    expect(typeof lines[0].durationMs).toBe("number");
    const all = JSON.stringify(logLines);
    expect(all).not.toContain(token);
    expect(all).not.toContain(token.split(".")[2]);
    // The API key header never reaches the log either.
    logLines.length = 0;
    await t.gql(`{ tenant { slug } }`, { headers: { "x-api-key": "tg_secret_value_that_must_not_be_logged" } });
    expect(JSON.stringify(logLines)).not.toContain("tg_secret_value_that_must_not_be_logged");
    expect(logLines.filter((l) => l.msg === "request")).toHaveLength(1);
  });
});

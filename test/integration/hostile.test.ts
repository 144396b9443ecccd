import { print } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import { QUERY_LIMIT_DEFAULTS } from "../../src/http/use-query-limits.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { ownerClient } from "../helpers/db.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import {
  DashboardDocument,
  NodeDocument,
  NodesDocument,
  ProjectSearchDocument,
  TenantSlugDocument,
  type DashboardQuery,
  type NodeQuery,
  type ProjectSearchQuery,
} from "../generated/operations.ts";

/**
 * The hostile battery (issue 4, point 6): documents built to exhaust the
 * server are refused with QUERY_TOO_COMPLEX before any SQL runs, oversized
 * bodies get 413, malformed ids and SQL-ish strings are ordinary input, and no
 * error response carries SQL, Prisma text, stack frames, file paths or another
 * tenant's data — asserted on the raw response text, not on parsed fields.
 */

interface Raw {
  status: number;
  text: string;
  json: any;
}

async function post(app: App, body: string | ReadableStream<Uint8Array>, headers: Record<string, string> = {}): Promise<Raw> {
  const res = await app.fetch("http://localhost/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
    ...(typeof body === "string" ? {} : { duplex: "half" }),
  } as RequestInit);
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

const request = (query: string, variables?: Record<string, unknown>) => JSON.stringify({ query, variables });

/** What an error response must never contain. */
const LEAKS: [string, RegExp][] = [
  ["Prisma", /prisma/i],
  ["SQL", /\b(SELECT|INSERT|UPDATE|DELETE)\s.*\b(FROM|INTO|SET)\b/i],
  ["SQL keyword", /\bSELECT\b/],
  ["a stack", /stack/i],
  ["a stack frame", /at \//],
  ["a file path", /\/(work|home|usr|tmp|app|src|node_modules)\//],
  ["a source file", /\.(ts|js|mjs|cjs):\d+/],
  ["a driver message", /postgres|relation "|violates|duplicate key/i],
  ["a column name", /tenant_id/],
];

function expectNoLeak(raw: Raw, otherTenants: string[] = []) {
  for (const [what, pattern] of LEAKS) {
    expect(raw.text, `response leaks ${what}: ${raw.text.slice(0, 300)}`).not.toMatch(pattern);
  }
  for (const secret of otherTenants) expect(raw.text, `response leaks ${secret}`).not.toContain(secret);
}

function expectTooComplex(raw: Raw, limit: RegExp) {
  expect(raw.json?.data ?? undefined).toBeUndefined();
  const codes = (raw.json?.errors ?? []).map((e: any) => e.extensions?.code);
  expect(codes, raw.text.slice(0, 300)).toContain("QUERY_TOO_COMPLEX");
  const messages = raw.json.errors.filter((e: any) => e.extensions?.code === "QUERY_TOO_COMPLEX").map((e: any) => e.message);
  expect(messages.join("\n")).toMatch(limit);
  expectNoLeak(raw);
}

/** A valid selection `levels` fields deep: projects > edges > node > deployments > edges > node > project > ... */
function deepQuery(levels: number): string {
  const cycle = ["deployments(first: 1)", "edges", "node", "project"];
  const fields = ["projects(first: 1)", "edges", "node"];
  while (fields.length < levels - 1) fields.push(cycle[(fields.length - 3) % cycle.length]!);
  const last = fields[fields.length - 1] === "project" || fields[fields.length - 1] === "node" ? "id" : "__typename";
  return `{ ${fields.map((f) => `${f} {`).join(" ")} ${last} ${"}".repeat(fields.length)} }`;
}

function appWith(t: TestApp, config: { introspection: boolean; production: boolean }): App {
  return createApp(testAppDeps(t.clients, t.store, { config: { graphiql: false, ...config } }));
}

describe("hostile queries", () => {
  let t: TestApp;
  let auth: Record<string, string>;
  /** Names and ids of globex and wayne, which an acme member must never see. */
  let foreign: string[];
  let foreignProjectId: string;

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    auth = { authorization: `Bearer ${await t.memberToken("acme", "VIEWER")}` };
    const others = await t.clients.platform.project.findMany({
      where: { tenant: { slug: { in: ["globex", "wayne"] } } },
      select: { id: true, name: true, tenantId: true },
    });
    expect(others.length).toBeGreaterThan(0);
    foreignProjectId = others[0]!.id;
    foreign = ["Globex", "globex", "Wayne", "wayne", ...others.flatMap((p) => [p.id, p.name, p.tenantId])];
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  describe("limits (QUERY_TOO_COMPLEX)", () => {
    it("the typed dashboard query and the deep-enough legit queries pass", async () => {
      const res = await post(t.app, request(print(DashboardDocument), { first: 20 }), auth);
      expect(res.json.errors).toBeUndefined();
      const data = res.json.data as DashboardQuery;
      expect(data.tenant.slug).toBe("acme");
      expect(data.projects.edges.length).toBeGreaterThan(0);
      // Depth right at the limit still runs.
      const atLimit = await post(t.app, request(deepQuery(QUERY_LIMIT_DEFAULTS.maxDepth)), auth);
      expect(atLimit.json.errors, atLimit.text.slice(0, 300)).toBeUndefined();
    });

    it("refuses a query 40 levels deep", async () => {
      const res = await post(t.app, request(deepQuery(40)), auth);
      expectTooComplex(res, /depth limit of 12 exceeded, found 40/i);
    });

    it("refuses one level past the depth limit", async () => {
      const res = await post(t.app, request(deepQuery(QUERY_LIMIT_DEFAULTS.maxDepth + 1)), auth);
      expectTooComplex(res, /depth limit/i);
    });

    it("refuses 2,000 aliases", async () => {
      const aliases = Array.from({ length: 2000 }, (_, i) => `a${i}: tenant { slug }`).join(" ");
      const res = await post(t.app, request(`{ ${aliases} }`), auth);
      // 12,000 tokens: the parser stops at the token limit before the alias count runs.
      expectTooComplex(res, /limit of \d+ exceeded/i);
    });

    it("refuses one alias past the alias limit (counted by the alias rule itself)", async () => {
      const n = QUERY_LIMIT_DEFAULTS.maxAliases + 1;
      const aliases = Array.from({ length: n }, (_, i) => `a${i}: tenant { slug }`).join(" ");
      const res = await post(t.app, request(`{ ${aliases} }`), auth);
      expectTooComplex(res, new RegExp(`Aliases limit of ${QUERY_LIMIT_DEFAULTS.maxAliases} exceeded, found ${n}`));
      const ok = await post(t.app, request(`{ ${aliases.replace(/ a\d+: tenant \{ slug \}$/, "")} }`), auth);
      expect(ok.json.errors, ok.text.slice(0, 300)).toBeUndefined();
    });

    it("refuses a document with a huge token count", async () => {
      const res = await post(t.app, request(`{ tenant { ${"slug ".repeat(10_000)} } }`), auth);
      expectTooComplex(res, /Token limit of 5000 exceeded/);
    });

    it("refuses many directives", async () => {
      const res = await post(t.app, request(`{ tenant { ${"slug @skip(if: false) ".repeat(60)} } }`), auth);
      expectTooComplex(res, /Directives limit of 50 exceeded, found 60/);
    });

    it("refuses an expensive query (100 projects x 100 deployments each)", async () => {
      const res = await post(
        t.app,
        request(`{ projects(first: 100) { edges { node { deployments(first: 100) { edges { node { id project { name } } } } } } } }`),
        auth,
      );
      expectTooComplex(res, /Cost limit of 100000 exceeded/);
    });

    it("limits are checked before authentication or any SQL", async () => {
      const res = await post(t.app, request(deepQuery(40)));
      expectTooComplex(res, /depth limit/i);
    });

    it("refuses a batch of 6 operations (limit 5) and runs a batch of 5", async () => {
      const op = { query: print(TenantSlugDocument) };
      const six = await post(t.app, JSON.stringify(Array.from({ length: 6 }, () => op)), auth);
      expect(six.status).toBeGreaterThanOrEqual(400);
      expect(six.text).toMatch(/batch/i);
      expect(six.text).not.toContain('"slug"');
      expectNoLeak(six);
      const five = await post(t.app, JSON.stringify(Array.from({ length: 5 }, () => op)), auth);
      expect(five.status).toBe(200);
      expect(five.json).toHaveLength(5);
      for (const r of five.json) expect(r.data.tenant.slug).toBe("acme");
    });
  });

  describe("bodies", () => {
    const fiveMegabytes = () => request(print(TenantSlugDocument), { pad: "x".repeat(5 * 1024 * 1024) });

    it("answers 413 to a 5 MB body that declares its length", async () => {
      const body = fiveMegabytes();
      const res = await post(t.app, body, { ...auth, "content-length": String(Buffer.byteLength(body)) });
      expect(res.status).toBe(413);
      expectNoLeak(res);
    });

    it("answers 413 to a 5 MB body streamed without a length", async () => {
      const bytes = new TextEncoder().encode(fiveMegabytes());
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent >= bytes.length) return controller.close();
          controller.enqueue(bytes.subarray(sent, sent + 64 * 1024));
          sent += 64 * 1024;
        },
      });
      const res = await post(t.app, stream, auth);
      expect(res.status).toBe(413);
      // The server stopped reading soon after the limit instead of buffering 5 MB.
      expect(sent).toBeLessThan(2 * 1024 * 1024);
    });

    it("answers 413 to a 5 MB query string", async () => {
      const res = await post(t.app, JSON.stringify({ query: `{ tenant { slug } } # ${"x".repeat(5 * 1024 * 1024)}` }), auth);
      expect(res.status).toBe(413);
    });
  });

  describe("malformed ids", () => {
    const ids = [
      "!!!",
      "",
      "   ",
      "%%%",
      "' OR 1=1 --",
      Buffer.from("Project:not-a-uuid").toString("base64"),
      Buffer.from("Project:").toString("base64"),
      Buffer.from(":").toString("base64"),
      Buffer.from("Nope:00000000-0000-0000-0000-000000000000").toString("base64"),
      Buffer.from("Project:00000000-0000-0000-0000-000000000000'; DROP TABLE projects; --").toString("base64"),
      Buffer.from("\u0000\u0001\u0002").toString("base64"),
      "x".repeat(50_000),
    ];

    it.each(ids.map((id) => [id.length > 40 ? `${id.slice(0, 20)}... (${id.length} chars)` : JSON.stringify(id), id]))(
      "node(id: %s) is null or BAD_USER_INPUT, never an internal error",
      async (_label, id) => {
        const res = await post(t.app, request(print(NodeDocument), { id }), auth);
        expect(res.status).toBeLessThan(500);
        const errors: any[] = res.json.errors ?? [];
        for (const e of errors) expect(["BAD_USER_INPUT", "NOT_FOUND"], JSON.stringify(e).slice(0, 200)).toContain(e.extensions?.code);
        if (errors.length === 0) expect((res.json.data as NodeQuery).node).toBeNull();
        // The id is not echoed back whole (a 50 kB id must not make a 50 kB error).
        expect(res.text.length).toBeLessThan(2000);
        expectNoLeak(res, foreign);
      },
    );

    it("node(id: ...) with a literal malformed id in the document", async () => {
      const res = await post(t.app, request(`{ node(id: "!!!") { id } }`), auth);
      const errors: any[] = res.json.errors ?? [];
      for (const e of errors) expect(e.extensions?.code).toBe("BAD_USER_INPUT");
      if (errors.length === 0) expect(res.json.data.node).toBeNull();
      expectNoLeak(res, foreign);
    });

    it("nodes(ids: [...]) with malformed ids answers per id, without an internal error", async () => {
      const res = await post(t.app, request(print(NodesDocument), { ids: ids.slice(0, 6) }), auth);
      expect(res.status).toBeLessThan(500);
      for (const e of res.json.errors ?? []) expect(["BAD_USER_INPUT", "NOT_FOUND"]).toContain(e.extensions?.code);
      expectNoLeak(res, foreign);
    });

    it("another tenant's project id is null (or NOT_FOUND) and names nothing of it", async () => {
      const res = await post(t.app, request(print(NodeDocument), { id: toGlobalId("Project", foreignProjectId) }), auth);
      for (const e of res.json.errors ?? []) expect(e.extensions?.code).toBe("NOT_FOUND");
      if (!res.json.errors) expect(res.json.data.node).toBeNull();
      expectNoLeak(res, foreign);
    });

    it("a malformed cursor is BAD_USER_INPUT", async () => {
      const res = await post(t.app, request(`{ projects(first: 2, after: "!!!'; DROP TABLE projects; --") { totalCount } }`), auth);
      expect(res.json.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
      expectNoLeak(res, foreign);
    });
  });

  describe("SQL-ish strings are plain text", () => {
    const hostile = ["'; DROP TABLE projects; --", "%_\\", "%", "_", "\\", "' OR '1'='1", "\u0000", "a".repeat(10_000), "Globex"];

    it.each(hostile.map((s) => [s.length > 40 ? `${s.slice(0, 10)}... (${s.length} chars)` : JSON.stringify(s), s]))(
      "projects(filter: { search: %s }) returns normal results",
      async (_label, search) => {
        const res = await post(t.app, request(print(ProjectSearchDocument), { search }), auth);
        expect(res.status).toBeLessThan(500);
        for (const e of res.json.errors ?? []) expect(e.extensions?.code).toBe("BAD_USER_INPUT");
        if (!res.json.errors) {
          const data = res.json.data as ProjectSearchQuery;
          // No acme project name contains any of these strings literally: a
          // wildcard-interpreting search would match every project instead.
          expect(data.projects.totalCount).toBe(0);
          expect(data.projects.edges).toEqual([]);
        }
        expectNoLeak(res, foreign);
      },
    );

    it("a NUL character is BAD_USER_INPUT, in a variable or in the document", async () => {
      const inVariable = await post(t.app, request(print(ProjectSearchDocument), { search: "web\u0000" }), auth);
      expect(inVariable.json.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "variables.search" });
      const inDocument = await post(t.app, request(`{ projects(filter: { search: "web\\u0000" }) { totalCount } }`), auth);
      expect(inDocument.json.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "projects.filter.search" });
      expect(inDocument.json.data ?? undefined).toBeUndefined();
      expectNoLeak(inDocument, foreign);
    });

    it("the tables survive and a normal search still works", async () => {
      const owner = ownerClient(t.db.url);
      try {
        const rows = await owner.$queryRawUnsafe<{ n: bigint }[]>(`SELECT count(*) AS n FROM projects`);
        expect(Number(rows[0]!.n)).toBeGreaterThan(0);
      } finally {
        await owner.$disconnect();
      }
      const res = await post(t.app, request(print(ProjectSearchDocument), { search: "acme" }), auth);
      expect(res.json.errors).toBeUndefined();
      expect((res.json.data as ProjectSearchQuery).projects.totalCount).toBe(4);
    });
  });

  describe("hostile values (issue 12): refused before anything walks them", () => {
    const createWorkflow = `mutation($c: JSON) { createWorkflow(input: { name: "deep", config: $c }) { workflow { id } } }`;
    const nested = (levels: number) => "[".repeat(levels) + "]".repeat(levels);
    let developer: Record<string, string>;
    beforeAll(async () => {
      developer = { authorization: `Bearer ${await t.memberToken("acme", "DEVELOPER")}` };
    });
    const workflows = () => t.clients.platform.workflow.count();
    const projects = () => t.clients.platform.project.count();

    function expectRefused(res: Raw, code: string, field?: string) {
      expect(res.status, res.text.slice(0, 300)).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(res.json.data ?? undefined).toBeUndefined();
      expect(res.json.errors?.[0]?.extensions?.code, res.text.slice(0, 300)).toBe(code);
      if (field) expect(res.json.errors[0].extensions.field).toBe(field);
      expectNoLeak(res, foreign);
    }

    it("a JSON variable nested 4,000 deep (8 KB, unauthenticated) is 400 BAD_USER_INPUT naming the variable", async () => {
      const body = `{"query":${JSON.stringify(createWorkflow)},"variables":{"c":${nested(4000)}}}`;
      expect(body.length).toBeLessThan(8 * 1024 + 200);
      const res = await post(t.app, body);
      expectRefused(res, "BAD_USER_INPUT", "variables.c");
      expect(res.json.errors[0].message).toMatch(/nested deeper than 32 levels/);
    });

    it("the same as a member: refused before execution, nothing stored", async () => {
      const before = await workflows();
      const deepObject = `${'{"a":'.repeat(4000)}1${"}".repeat(4000)}`;
      for (const value of [nested(4000), deepObject]) {
        const res = await post(t.app, `{"query":${JSON.stringify(createWorkflow)},"variables":{"c":${value}}}`, developer);
        expectRefused(res, "BAD_USER_INPUT", "variables.c");
      }
      expect(await workflows()).toBe(before);
    });

    it("a config nested exactly 32 deep is stored; 33 deep is refused", async () => {
      const ok = await post(t.app, request(createWorkflow, { c: { a: JSON.parse(nested(31)) } }), developer);
      expect(ok.json.errors, ok.text.slice(0, 300)).toBeUndefined();
      const row = await t.clients.platform.workflow.findFirstOrThrow({ where: { id: Buffer.from(ok.json.data.createWorkflow.workflow.id, "base64").toString().split(":")[1]! } });
      expect(row.config).toEqual({ a: JSON.parse(nested(31)) });
      const over = await post(t.app, request(createWorkflow, { c: { a: JSON.parse(nested(32)) } }), developer);
      expectRefused(over, "BAD_USER_INPUT", "variables.c");
    });

    it("variables holding more than 10,000 values are 400 BAD_USER_INPUT", async () => {
      const res = await post(t.app, request(createWorkflow, { c: Array.from({ length: 10_001 }, () => 0) }), developer);
      expectRefused(res, "BAD_USER_INPUT", "variables");
      expect(res.json.errors[0].message).toMatch(/more than 10000 values/);
    });

    it("a literal nested 2,400 deep in the document is refused before parsing (400 QUERY_TOO_COMPLEX)", async () => {
      const res = await post(t.app, request(`mutation { createWorkflow(input: { name: "x", config: ${nested(2400)} }) { workflow { id } } }`));
      expectRefused(res, "QUERY_TOO_COMPLEX");
      expect(res.json.errors[0].message).toMatch(/Nesting limit of 64 exceeded/);
      const brackets = await post(t.app, request(`query($c: JSON = ${nested(2400)}) { __typename }`));
      expectRefused(brackets, "QUERY_TOO_COMPLEX");
    });

    it("a literal nested 33 deep is BAD_USER_INPUT with its argument path; brackets inside strings and comments do not count", async () => {
      const before = await workflows();
      const res = await post(t.app, request(`mutation { createWorkflow(input: { name: "x", config: { steps: ${nested(31)} } }) { workflow { id } } }`), developer);
      expect(res.json.errors?.[0]?.extensions, res.text.slice(0, 300)).toMatchObject({ code: "BAD_USER_INPUT", field: "createWorkflow.input" });
      expect(res.status).toBe(400);
      expect(await workflows()).toBe(before);
      const text = `mutation { createWorkflow(input: { name: ${JSON.stringify("[".repeat(100))}, config: { note: """${"{".repeat(100)}""" } }) { workflow { id } } } # ${"(".repeat(100)}`;
      const ok = await post(t.app, request(text), developer);
      expect(ok.json.errors, ok.text.slice(0, 300)).toBeUndefined();
    });

    const strings: [string, () => string, Record<string, unknown> | undefined, string][] = [
      ["NUL in a project name (variable)", () => `mutation($n: String!) { createProject(input: { name: $n }) { project { id } } }`, { n: "web\u0000app" }, "variables.n"],
      ["NUL in a project name (inline)", () => `mutation { createProject(input: { name: "web\\u0000app" }) { project { id } } }`, undefined, "createProject.input.name"],
      ["a lone high surrogate in a name (variable)", () => `mutation($n: String!) { createProject(input: { name: $n }) { project { id } } }`, { n: "web\ud800app" }, "variables.n"],
      ["a lone low surrogate in a name (variable)", () => `mutation($n: String!) { createProject(input: { name: $n }) { project { id } } }`, { n: "\udc00" }, "variables.n"],
      ["a lone surrogate escaped in the document", () => `mutation { createProject(input: { name: "web\\ud800app" }) { project { id } } }`, undefined, "query"],
      ["a raw lone surrogate in the document", () => `mutation { createProject(input: { name: "web\ud800app" }) { project { id } } }`, undefined, "query"],
      ["a lone surrogate in a workflow config value", () => createWorkflow, { c: { steps: ["ok", "bad\ud83d"] } }, "variables.c.steps[1]"],
      ["NUL in a workflow config key", () => createWorkflow, { c: { "env\u0000": "x" } }, 'variables.c["env\\u0000"]'],
      ["a lone surrogate in a workflow config key", () => createWorkflow, { c: { ["k\udfff"]: 1 } }, 'variables.c["k\\udfff"]'],
      ["NUL in an inline workflow config", () => `mutation { createWorkflow(input: { name: "x", config: { env: ["a", "b\\u0000"] } }) { workflow { id } } }`, undefined, "createWorkflow.input.config.env[1]"],
    ];

    it.each(strings)("%s is 400 BAD_USER_INPUT naming the field, and nothing is stored", async (_label, query, variables, field) => {
      const [w, p] = [await workflows(), await projects()];
      const res = await post(t.app, request(query(), variables), developer);
      expect(res.status).toBe(400);
      expect(res.json.errors?.[0]?.extensions, res.text.slice(0, 300)).toMatchObject({ code: "BAD_USER_INPUT", field });
      expect(res.json.data ?? undefined).toBeUndefined();
      expect([await workflows(), await projects()]).toEqual([w, p]);
      expectNoLeak(res, foreign);
    });

    it("well-formed text outside the BMP (a surrogate pair) is ordinary input", async () => {
      const name = `Rocket \u{1F680} ${Date.now()}`;
      const res = await post(t.app, request(`mutation($n: String!) { createProject(input: { name: $n }) { project { name } } }`, { n: name }), developer);
      expect(res.json.errors, res.text.slice(0, 300)).toBeUndefined();
      expect(res.json.data.createProject.project.name).toBe(name);
      const inline = await post(t.app, request(`mutation { createWorkflow(input: { name: "\\ud83d\\ude80 \\u{1F680}", config: { e: "\\ud83d\\ude80" } }) { workflow { name } } }`), developer);
      expect(inline.json.errors, inline.text.slice(0, 300)).toBeUndefined();
      expect(inline.json.data.createWorkflow.workflow.name).toBe("\u{1F680} \u{1F680}");
    });

    for (const mode of ["development", "production"] as const) {
      it(`a malformed JSON body is 400 BAD_REQUEST and never echoed (${mode})`, async () => {
        const app = mode === "production" ? appWith(t, { introspection: false, production: true }) : t.app;
        const secret = "sk_live_hunter2_do_not_echo";
        const res = await post(app, `{"query": "{ tenant { slug } }", "variables": {"apiKey": "${secret}"`, auth);
        expect(res.status).toBe(400);
        expect(res.json.errors[0].extensions).toEqual({ code: "BAD_REQUEST" });
        expect(res.text).not.toContain(secret);
        expect(res.text).not.toContain("tenant { slug }");
        expect(res.text).not.toMatch(/originalError|SyntaxError|position/);
        const get = await app.fetch(`http://localhost/graphql?query=${encodeURIComponent("{ __typename }")}&variables=${encodeURIComponent(`{"k": "${secret}"`)}`, { headers: auth });
        const getText = await get.text();
        expect(get.status).toBe(400);
        expect(JSON.parse(getText).errors[0].extensions.code).toBe("BAD_REQUEST");
        expect(getText).not.toContain(secret);
      });
    }
  });

  describe("error responses leak nothing", () => {
    const cases: [string, () => Promise<Raw>][] = [
      ["a syntax error", () => post(t.app, request(`{ tenant { slug `), auth)],
      ["an unknown field", () => post(t.app, request(`{ tenant { secret } }`), auth)],
      ["a wrong variable type", () => post(t.app, request(print(DashboardDocument), { first: "twenty" }), auth)],
      ["a page size over 100", () => post(t.app, request(print(DashboardDocument), { first: 5000 }), auth)],
      ["a negative page size", () => post(t.app, request(print(DashboardDocument), { first: -1 }), auth)],
      ["malformed JSON", () => post(t.app, `{"query": "{ tenant { slug } }"`, auth)],
      ["a JSON array of garbage", () => post(t.app, `[1, "two", null]`, auth)],
      ["no query at all", () => post(t.app, `{}`, auth)],
      ["a bad token", () => post(t.app, request(print(TenantSlugDocument)), { authorization: "Bearer not.a.jwt" })],
      ["an unknown tenant", () => post(t.app, request(print(TenantSlugDocument)), { ...auth, "x-tenant-id": "globex" })],
      ["a mutation by a viewer", () => post(t.app, request(`mutation { createProject(input: { name: "x" }) { project { id } } }`), auth)],
      ["an invalid project name", () => post(t.app, request(`mutation { updateProject(input: { id: "!!!", name: "" }) { project { id } } }`), auth)],
    ];

    it.each(cases)("%s", async (_label, send) => {
      const res = await send();
      expect(res.status).toBeLessThan(500);
      // A batch answers one result per item.
      const errors = (Array.isArray(res.json) ? res.json : [res.json]).flatMap((r: any) => r?.errors ?? []);
      expect(errors.length, res.text.slice(0, 300)).toBeGreaterThan(0);
      for (const e of errors) expect(e.extensions?.code).not.toBe("INTERNAL_SERVER_ERROR");
      expectNoLeak(res, foreign);
    });

    it("the leak detector itself catches a leak", () => {
      const leaky: Raw = { status: 500, text: `{"message":"Invalid prisma.project.findMany() at /work/main/src/x.ts:12"}`, json: {} };
      expect(() => expectNoLeak(leaky)).toThrow();
      expect(() => expectNoLeak({ status: 200, text: "Globex Web", json: {} }, foreign)).toThrow();
    });
  });

  describe("introspection and suggestions", () => {
    const introspect = `{ __schema { types { name } } }`;

    it("introspection on: __schema answers", async () => {
      const res = await post(t.app, request(introspect), auth);
      expect(res.json.errors).toBeUndefined();
      expect(res.json.data.__schema.types.map((x: any) => x.name)).toContain("Project");
    });

    it("introspection off: __schema and __type are refused, __typename still works", async () => {
      const off = appWith(t, { introspection: false, production: false });
      const res = await post(off, request(introspect), auth);
      expect(res.json.data ?? undefined).toBeUndefined();
      expect(res.json.errors[0].message).toMatch(/introspection has been disabled/i);
      expect(res.text).not.toContain('"Project"');
      const type = await post(off, request(`{ __type(name: "Project") { fields { name } } }`), auth);
      expect(type.json.data ?? undefined).toBeUndefined();
      const typename = await post(off, request(`{ __typename tenant { slug } }`), auth);
      expect(typename.json).toEqual({ data: { __typename: "Query", tenant: { slug: "acme" } } });
    });

    it("field suggestions are shown in development", async () => {
      const res = await post(t.app, request(`{ tenant { slg } }`), auth);
      expect(res.json.errors[0].message).toContain("Did you mean");
    });

    it("field suggestions are hidden in production", async () => {
      const prod = appWith(t, { introspection: false, production: true });
      for (const query of [`{ tenant { slg } }`, `{ projets(first: 1) { totalCount } }`, `{ projects(frist: 1) { totalCount } }`]) {
        const res = await post(prod, request(query), auth);
        expect(res.json.errors.length).toBeGreaterThan(0);
        expect(res.text).not.toMatch(/did you mean/i);
        expect(res.text).not.toMatch(/"slug"|"projects"|"first"/);
      }
    });
  });
});

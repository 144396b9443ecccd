import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import { ownerClient } from "../helpers/db.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { createSqlCounter, messagesOf, summarize } from "../helpers/sql-counter.ts";

/**
 * SPEC section 3: /healthz, /readyz, X-Request-ID, 400 on malformed JSON,
 * 413 on oversized bodies (declared or chunked), masked internal errors and
 * an offline GraphiQL.
 */

const MAX_BODY = 4096;

/** The same app as createTestApp's, with our own probes and a small body limit. */
function appWith(t: TestApp, probes: Record<string, () => Promise<boolean>>): App {
  return createApp(testAppDeps(t.clients, t.store, { config: { maxBodyBytes: MAX_BODY }, probes }));
}

describe("HTTP surface", () => {
  let t: TestApp;
  let small: App;
  let token: string;
  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    token = await t.memberToken("acme", "VIEWER");
    small = appWith(t, { postgres: async () => true });
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  it("GET /healthz answers 200", async () => {
    const res = await t.app.fetch("http://localhost/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
    expect(res.headers.get("x-request-id")).toBeTruthy();
  });

  it("GET /readyz answers 200 naming each dependency", async () => {
    const res = await t.app.fetch("http://localhost/readyz");
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.status).toBe("ready");
    expect(body.dependencies).toEqual({ postgres: "ok", store: "ok" });
  });

  it("GET /readyz answers 503 when a probe fails, naming the one that is down", async () => {
    const down = appWith(t, { postgres: async () => true, redis: async () => false });
    const res = await down.fetch("http://localhost/readyz");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: "unavailable", dependencies: { postgres: "ok", redis: "down" } });
  });

  it("GET /readyz answers 503 when PostgreSQL cannot be reached (a closed pool)", async () => {
    const pool = new pg.Pool({ connectionString: t.db.url, max: 1 });
    const probe = async () => (await pool.query("SELECT 1")).rowCount === 1;
    const app = appWith(t, { postgres: probe });
    expect((await app.fetch("http://localhost/readyz")).status).toBe(200);
    await pool.end();
    const res = await app.fetch("http://localhost/readyz");
    expect(res.status).toBe(503);
    expect((await res.json()).dependencies.postgres).toBe("down");
  });

  describe("X-Request-ID", () => {
    it("echoes a sane incoming id", async () => {
      const res = await t.app.fetch("http://localhost/healthz", { headers: { "x-request-id": "abc-123.def:4_5" } });
      expect(res.headers.get("x-request-id")).toBe("abc-123.def:4_5");
    });

    it("is echoed on GraphQL responses too", async () => {
      const res = await t.gql(`{ __typename }`, { headers: { "x-request-id": "req-42" } });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-request-id")).toBe("req-42");
    });

    it.each([
      ["absent", undefined],
      ["too long (500 chars)", "a".repeat(500)],
      ["with spaces", "hello world"],
      ["with a tab", "a\tb"],
      ["with quotes and angle brackets", `"><script>`],
    ])("is generated when the incoming one is %s", async (_label, value) => {
      const headers: Record<string, string> = value === undefined ? {} : { "x-request-id": value };
      const res = await t.app.fetch("http://localhost/healthz", { headers });
      const id = res.headers.get("x-request-id");
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(id).not.toBe(value);
    });

    it("differs between requests when generated", async () => {
      const a = (await t.app.fetch("http://localhost/healthz")).headers.get("x-request-id");
      const b = (await t.app.fetch("http://localhost/healthz")).headers.get("x-request-id");
      expect(a).not.toBe(b);
    });
  });

  it("answers malformed JSON with HTTP 400 BAD_REQUEST, echoing none of it", async () => {
    const res = await t.app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: `{"query": "{ __typename }", "password": "pw-in-a-broken-body"`,
    });
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(JSON.parse(text).errors).toEqual([{ message: "The POST body is not valid JSON", extensions: { code: "BAD_REQUEST" } }]);
    expect(text).not.toContain("pw-in-a-broken-body");
    expect(text).not.toContain("__typename");
    expect(res.headers.get("x-request-id")).toBeTruthy();
  });

  describe("CORS (CORS_ORIGINS)", () => {
    const allowed = "https://app.example.com";
    const evil = "https://evil.example";
    let cors: App;
    beforeAll(() => {
      cors = createApp(testAppDeps(t.clients, t.store, { config: { corsOrigins: [allowed, "http://localhost:5173"] } }));
    });
    const preflight = (app: App, origin: string) =>
      app.fetch("http://localhost/graphql", {
        method: "OPTIONS",
        headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type, authorization" },
      });

    it("a preflight from an allowed origin is answered for that origin, with credentials", async () => {
      const res = await preflight(cors, allowed);
      expect(res.status).toBe(204);
      expect(res.headers.get("access-control-allow-origin")).toBe(allowed);
      expect(res.headers.get("access-control-allow-credentials")).toBe("true");
      expect(res.headers.get("access-control-allow-headers")).toMatch(/authorization/);
      expect(res.headers.get("access-control-allow-headers")).toMatch(/idempotency-key/);
      expect(res.headers.get("access-control-allow-methods")).toMatch(/POST/);
      expect(res.headers.get("vary")).toMatch(/Origin/);
    });

    it("a preflight from another origin gets no CORS headers at all", async () => {
      const res = await preflight(cors, evil);
      expect(res.headers.get("access-control-allow-origin")).toBeNull();
      expect(res.headers.get("access-control-allow-credentials")).toBeNull();
      expect(res.headers.get("access-control-allow-headers")).toBeNull();
    });

    it("by default (no CORS_ORIGINS) no origin is allowed, with or without credentials", async () => {
      for (const origin of [allowed, evil]) {
        const res = await preflight(t.app, origin);
        expect(res.headers.get("access-control-allow-origin")).toBeNull();
        expect(res.headers.get("access-control-allow-credentials")).toBeNull();
      }
    });

    it("an actual request from an allowed origin may read the response and its headers; another origin may not", async () => {
      const send = (origin: string) =>
        cors.fetch("http://localhost/graphql", {
          method: "POST",
          headers: { origin, "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify({ query: "{ tenant { slug } }" }),
        });
      const ok = await send(allowed);
      expect(ok.headers.get("access-control-allow-origin")).toBe(allowed);
      expect(ok.headers.get("access-control-expose-headers")).toMatch(/X-Request-ID/);
      expect(ok.headers.get("access-control-expose-headers")).toMatch(/Idempotency-Replayed/);
      const other = await send(evil);
      expect(other.headers.get("access-control-allow-origin")).toBeNull();
    });

    it("CORS_ORIGINS=* allows any origin, never with credentials", async () => {
      const any = createApp(testAppDeps(t.clients, t.store, { config: { corsOrigins: ["*"] } }));
      const res = await preflight(any, evil);
      expect(res.headers.get("access-control-allow-origin")).toBe(evil);
      expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    });
  });

  describe("CSRF prevention", () => {
    const mutation = `mutation { createProject(input: { name: "csrf-probe" }) { project { id } } }`;
    const created = () => t.clients.platform.project.count({ where: { name: "csrf-probe" } });
    const refusedAs = async (res: Response, status: number) => {
      expect(res.status).toBe(status);
      expect((await res.json()).errors[0].extensions.code).toBe("BAD_REQUEST");
    };

    it("a text/plain POST is refused (415 BAD_REQUEST), even one that is valid JSON", async () => {
      const res = await t.app.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: JSON.stringify({ query: mutation }),
      });
      await refusedAs(res, 415);
    });

    it("a form POST and a multipart POST are refused, and the mutation does not run", async () => {
      const form = await t.app.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ query: mutation }).toString(),
      });
      await refusedAs(form, 415);
      const data = new FormData();
      data.set("operations", JSON.stringify({ query: mutation }));
      const multipart = await t.app.fetch("http://localhost/graphql", { method: "POST", body: data });
      await refusedAs(multipart, 415);
      expect(await created()).toBe(0);
    });

    it("a GET without a header a browser would have to preflight is refused; with Authorization it runs", async () => {
      const url = `http://localhost/graphql?query=${encodeURIComponent("{ tenant { slug } }")}`;
      await refusedAs(await t.app.fetch(url), 403);
      const ok = await t.app.fetch(url, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect((await ok.json()).data).toEqual({ tenant: { slug: "acme" } });
    });
  });

  describe("bodies over maxBodyBytes", () => {
    const bigQuery = () => JSON.stringify({ query: `{ tenant { slug } }`, variables: { pad: "x".repeat(MAX_BODY * 2) } });
    const headers = () => ({ "content-type": "application/json", authorization: `Bearer ${token}` });

    it("accepts a body under the limit", async () => {
      const res = await small.fetch("http://localhost/graphql", {
        method: "POST",
        headers: headers(),
        body: JSON.stringify({ query: `{ tenant { slug } }` }),
      });
      expect(res.status).toBe(200);
      expect((await res.json()).data).toEqual({ tenant: { slug: "acme" } });
    });

    it("answers 413 when content-length exceeds the limit", async () => {
      const body = bigQuery();
      const res = await small.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { ...headers(), "content-length": String(Buffer.byteLength(body)) },
        body,
      });
      expect(res.status).toBe(413);
      expect(res.headers.get("x-request-id")).toBeTruthy();
    });

    it("answers 413 to a chunked body without content-length (in-process stream)", async () => {
      const chunk = new TextEncoder().encode(bigQuery());
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent >= chunk.length) return controller.close();
          controller.enqueue(chunk.subarray(sent, sent + 1000));
          sent += 1000;
        },
      });
      const res = await small.fetch("http://localhost/graphql", {
        method: "POST",
        headers: headers(),
        body: stream,
        duplex: "half",
      } as RequestInit);
      expect(res.status).toBe(413);
      expect(sent).toBeLessThan(chunk.length); // it stopped reading at the limit
    });

    it("still serves a small chunked body without content-length", async () => {
      const bytes = new TextEncoder().encode(JSON.stringify({ query: `{ tenant { slug } }` }));
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(bytes.subarray(0, 5));
          controller.enqueue(bytes.subarray(5));
          controller.close();
        },
      });
      const res = await small.fetch("http://localhost/graphql", {
        method: "POST",
        headers: headers(),
        body: stream,
        duplex: "half",
      } as RequestInit);
      expect(res.status).toBe(200);
      expect((await res.json()).data).toEqual({ tenant: { slug: "acme" } });
    });

    describe("over a real socket (Transfer-Encoding: chunked)", () => {
      let server: Server;
      let port: number;
      beforeAll(async () => {
        server = createServer(small);
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        port = (server.address() as AddressInfo).port;
      });
      afterAll(async () => {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      });

      const post = (chunks: string[]) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = httpRequest(
            { host: "127.0.0.1", port, path: "/graphql", method: "POST", headers: headers() },
            (res) => {
              let body = "";
              res.on("data", (d) => (body += d));
              res.on("end", () => resolve({ status: res.statusCode!, body }));
            },
          );
          req.on("error", reject);
          for (const c of chunks) req.write(c);
          req.end();
        });

      it("answers 413", async () => {
        const body = bigQuery();
        const res = await post([body.slice(0, 1000), body.slice(1000, 5000), body.slice(5000)]);
        expect(res.status).toBe(413);
      });

      it("serves a small chunked request", async () => {
        const body = JSON.stringify({ query: `{ tenant { slug } }` });
        const res = await post([body.slice(0, 4), body.slice(4)]);
        expect(res.status).toBe(200);
        expect(JSON.parse(res.body).data).toEqual({ tenant: { slug: "acme" } });
      });
    });
  });

  describe("masked internal errors", () => {
    it("a database failure surfaces as INTERNAL_SERVER_ERROR with no SQL, stack or driver text", async () => {
      const owner = ownerClient(t.db.url);
      // A real database error: the table the resolver reads is gone.
      await owner.$executeRawUnsafe(`ALTER TABLE projects RENAME TO projects_gone`);
      try {
        const res = await t.gql(`{ projects(first: 2) { totalCount edges { node { name } } } }`, {
          token: await t.memberToken("acme", "VIEWER"),
        });
        expect(res.status).toBe(200);
        expect(res.body.errors).toHaveLength(1);
        const [error] = res.body.errors!;
        expect(error.extensions).toEqual({ code: "INTERNAL_SERVER_ERROR" });
        expect(error.message).toBe("Unexpected error.");
        const text = JSON.stringify(res.body).toLowerCase();
        for (const leak of ["prisma", "projects_gone", "select", "relation", "stack", "at ", "postgres", "tenant_id", ".ts"]) {
          expect(text).not.toContain(leak);
        }
      } finally {
        await owner.$executeRawUnsafe(`ALTER TABLE projects_gone RENAME TO projects`);
        await owner.$disconnect();
      }
    });

    it("a closed pool surfaces as INTERNAL_SERVER_ERROR too", async () => {
      const broken = await createTestApp({ store: isolatedStore() });
      try {
        const token = await broken.memberToken("acme", "VIEWER");
        // Warm the directory, so the failure happens in the resolver's query.
        expect((await broken.gql(`{ tenant { slug } }`, { token })).body.data.tenant.slug).toBe("acme");
        await Promise.all(Object.values(broken.clients.appPools).map((p) => p.end()));
        const res = await broken.gql(`{ projects(first: 1) { totalCount } }`, { token });
        expect(res.body.errors?.[0]?.extensions).toEqual({ code: "INTERNAL_SERVER_ERROR" });
        const text = JSON.stringify(res.body).toLowerCase();
        expect(text).not.toContain("pool");
        expect(text).not.toContain("prisma");
      } finally {
        await broken.clients.platform.$disconnect();
        await broken.clients.platformPool.end().catch(() => {});
        await broken.store.close();
        await broken.db.drop();
      }
    });
  });

  describe("SQL per request", () => {
    it("{ tenant { slug } } once the directory cache is warm: only the authorization facts, in the message that opens the transaction", async () => {
      const counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
      try {
        const token = await t.token("owner@wayne.test", "wayne");
        await t.store.deletePattern("*");
        const cold = await counter.record(() => t.gql(`{ tenant { slug } }`, { token }));
        expect(cold.result.body.data?.tenant?.slug).toBe("wayne");
        const warm = await counter.record(() => t.gql(`{ tenant { slug } }`, { token }));
        expect(warm.result.body.data?.tenant?.slug).toBe("wayne");
        console.info(
          `SQL statements for { tenant { slug } }: cold ${JSON.stringify(summarize(cold.statements))}, warm ${JSON.stringify(summarize(warm.statements))}`,
        );
        // PostgreSQL confirms the cached answers (docs/revocation.md): BEGIN,
        // the settings and app_request_facts in one message, then COMMIT.
        const confirm = [
          { pool: "app", message: expect.any(Number), sql: expect.stringMatching(/^BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT set_config\('app\.tenant_id'.*; SELECT app_request_facts\(NULL, NULL\) AS facts, \(SELECT placement::text \|\| coalesce\(':' \|\| placement_server, ''\) \|\| coalesce\(':' \|\| placement_name, ''\) FROM tenants WHERE id = '[0-9a-f-]{36}'::uuid\) AS route$/) },
          { pool: "app", message: expect.any(Number), sql: "COMMIT" },
        ];
        // Cold: user, tenant by slug, tenant by id (with overrides), membership, on the platform pool.
        expect(cold.statements.filter((s) => s.pool === "app")).toEqual(confirm);
        expect(cold.statements.filter((s) => s.pool === "platform").length).toBeGreaterThan(0);
        expect(warm.statements).toEqual(confirm);
        expect(messagesOf(warm.statements)).toBe(2);
      } finally {
        counter.detach();
      }
    });
  });

  describe("GraphiQL", () => {
    it("is served offline: no CDN URLs, assets inline", async () => {
      const res = await t.app.fetch("http://localhost/graphql", { headers: { accept: "text/html" } });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/html");
      const html = await res.text();
      expect(html.toLowerCase()).toContain("graphiql");
      for (const cdn of ["unpkg", "jsdelivr", "cdn.", "esm.sh", "googleapis"]) expect(html).not.toContain(cdn);
      // Every script and stylesheet is inline or served by this server.
      const tags = [...html.matchAll(/<(?:script|link)\b[^>]{0,500}>/g)].map((m) => m[0]);
      expect(tags.length).toBeGreaterThan(0);
      for (const tag of tags) expect(tag).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
      // The GraphiQL bundle itself is in the page (hundreds of kB of inline script).
      expect(html.length).toBeGreaterThan(200_000);
      // The example operations and the header template.
      expect(html).toContain("Dashboard");
      expect(html).toContain("X-Tenant-ID");
    });
  });
});

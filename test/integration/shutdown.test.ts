import { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Databases } from "../../src/db/clients.ts";
import { REQUEST_RESOURCE } from "../../src/infra/request-counter.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { createTestClients, createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { startServer, type ServerProcess } from "../helpers/server-process.ts";
import { eventually } from "../helpers/eventually.ts";

/**
 * Graceful shutdown (issue 12 point 4, SPEC section 10), on a real server
 * process: SIGTERM in the middle of a load of 16 clients mixing reads and
 * mutations cuts no request sent before the signal, every acknowledged
 * mutation is stored and nothing else is, the buffered request counts reach
 * PostgreSQL, and the process exits 0. A request that never ends is cut at
 * SHUTDOWN_DRAIN_MS, and /readyz answers 503 meanwhile.
 */

const JWT_SECRET = "shutdown-test-secret-0123456789abcdef0123";
const CLIENTS = 16;

interface Outcome {
  kind: "read" | "mutation";
  /** Sent before SIGTERM. */
  beforeSignal: boolean;
  status?: number;
  error?: string;
  projectName?: string;
  acknowledged?: boolean;
}

function exitOf(server: ServerProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

/** The JSON log lines of a server process with the given message. */
const logLines = (server: ServerProcess, msg: string) =>
  server
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{") && l.endsWith("}"))
    .map((l) => JSON.parse(l) as Record<string, any>)
    .filter((l) => l.msg === msg);

describe("graceful shutdown of a real server process", () => {
  let db: TestDatabase;
  let clients: Databases;
  let token: string;
  const env = () => ({
    DATABASE_URL: db.url,
    REDIS_URL: undefined,
    MIGRATE_ON_START: "true",
    SEED_ON_START: "true",
    JWT_SECRET,
    LOG_LEVEL: "info",
  });

  beforeAll(async () => {
    db = await createTestDatabase();
    clients = createTestClients(db.url, 2);
    token = await signDevToken({ secret: JWT_SECRET, sub: "developer@wayne.test", tenant: "wayne", ttl: "10m" });
  }, 120_000);

  afterAll(async () => {
    await clients?.close();
    await db?.drop();
  });

  it("SIGTERM under load: no request sent before the signal is cut, acknowledged mutations = stored rows, exit 0", async () => {
    const server = await startServer(env());
    const exited = exitOf(server);
    let signalled = false;
    let inFlight = 0;
    let inFlightAtSignal = -1;
    const outcomes: Outcome[] = [];

    const send = async (client: number, i: number): Promise<Outcome> => {
      const mutation = i % 2 === 1;
      const outcome: Outcome = { kind: mutation ? "mutation" : "read", beforeSignal: !signalled };
      outcomes.push(outcome);
      const name = `shutdown ${client}-${i}`;
      const query = mutation
        ? `mutation { createProject(input: { name: "${name}" }) { project { id name } } }`
        : `{ projects(first: 5) { totalCount edges { node { name } } } }`;
      if (mutation) outcome.projectName = name;
      inFlight++;
      try {
        const res = await fetch(`${server.url}/graphql`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify({ query }),
        });
        const body = (await res.json()) as { data?: any; errors?: unknown[] };
        outcome.status = res.status;
        if (mutation) outcome.acknowledged = res.status === 200 && body.data?.createProject?.project?.name === name;
        else if (res.status === 200) expect(body.errors).toBeUndefined();
      } catch (err) {
        outcome.error = String((err as { cause?: unknown }).cause ?? err);
      } finally {
        inFlight--;
      }
      return outcome;
    };

    // Each client sends one request after the other until its first failure after the signal.
    const loops = Array.from({ length: CLIENTS }, async (_, client) => {
      for (let i = 0; i < 100_000; i++) {
        const outcome = await send(client, i);
        if (signalled && outcome.status !== 200) return;
      }
    });

    // Signal once the load is well under way (some mutations acknowledged).
    await eventually("40 acknowledged mutations", () => outcomes.filter((o) => o.acknowledged).length >= 40, 60_000);
    inFlightAtSignal = inFlight;
    const t0 = performance.now();
    signalled = true;
    server.child.kill("SIGTERM");
    const { code, signal } = await exited;
    const exitMs = performance.now() - t0;
    await Promise.all(loops);

    expect({ code, signal }).toEqual({ code: 0, signal: null });
    // The signal did land in the middle of requests.
    expect(inFlightAtSignal).toBeGreaterThan(0);

    const before = outcomes.filter((o) => o.beforeSignal);
    const cut = before.filter((o) => o.status !== 200);
    expect(cut).toEqual([]);

    const acknowledged = outcomes.filter((o) => o.acknowledged).map((o) => o.projectName!).sort();
    const stored = (
      await clients.platform.project.findMany({ where: { name: { startsWith: "shutdown " } }, select: { name: true } })
    )
      .map((p) => p.name)
      .sort();
    expect(stored).toEqual(acknowledged);

    // Every answered request was counted, and the count reached PostgreSQL before the exit.
    const wayne = await clients.platform.tenant.findUniqueOrThrow({ where: { slug: "wayne" } });
    const counted = await clients.platform.usageCounter.aggregate({
      where: { tenantId: wayne.id, resource: REQUEST_RESOURCE },
      _sum: { count: true },
    });
    expect(counted._sum.count).toBe(outcomes.filter((o) => o.status !== undefined).length);

    const [draining] = logLines(server, "shutting down: draining in-flight requests");
    const [stopped] = logLines(server, "stopped");
    expect(draining?.signal).toBe("SIGTERM");
    expect(stopped).toBeDefined();
    // The figures of the closing note (issue 12): printed, not asserted.
    console.log(
      `shutdown: ${inFlightAtSignal} requests in flight at SIGTERM (server saw ${draining?.inFlight}), ${cut.length} cut, ` +
        `${outcomes.length} requests (${acknowledged.length} acknowledged mutations = ${stored.length} rows), ` +
        `exit after ${exitMs.toFixed(0)} ms (drain + flush + close: ${stopped?.ms} ms)`,
    );
  }, 120_000);

  it("a request that never ends is cut at SHUTDOWN_DRAIN_MS; /readyz answers 503 while draining; exit 0", async () => {
    const server = await startServer({ ...env(), SHUTDOWN_DRAIN_MS: "1500" });
    const exited = exitOf(server);
    const connect = async () => {
      const socket = new Socket();
      await new Promise<void>((resolve, reject) => socket.connect(server.port, "127.0.0.1", resolve).once("error", reject));
      let received = "";
      socket.on("data", (d) => (received += d));
      const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
      return { socket, received: () => received, closed };
    };
    // A /readyz request begun before the signal (its last line is sent after it).
    const probe = await connect();
    probe.socket.write(`GET /readyz HTTP/1.1\r\nHost: x\r\n`);
    // A request whose body never arrives: in flight until the drain gives up on it.
    // The server's "100 Continue" says it has the request (and the probe's start, sent earlier).
    const stuck = await connect();
    stuck.socket.write(`POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n`);
    await eventually("100 Continue", () => stuck.received().includes("100 Continue"));
    stuck.socket.write(`{"query":`);

    server.child.kill("SIGTERM");
    await eventually("the drain to start", () => logLines(server, "shutting down: draining in-flight requests").length > 0 || server.child.exitCode !== null);
    probe.socket.write(`\r\n`);
    await probe.closed;
    expect(probe.received()).toMatch(/^HTTP\/1\.1 503 /);
    expect(probe.received()).toContain(`"status":"draining"`);
    expect(probe.received().toLowerCase()).toContain("connection: close");

    await stuck.closed;
    expect(stuck.received()).toBe("HTTP/1.1 100 Continue\r\n\r\n");
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(logLines(server, "drain timeout: closing the remaining connections")[0]?.cut).toBe(1);
  }, 120_000);
});

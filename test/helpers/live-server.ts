import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { attachWebSocket } from "../../src/http/websocket.ts";
import { createLogger } from "../../src/infra/logger.ts";
import type { TestApp } from "./app.ts";

/**
 * A test app on a real HTTP server with its WebSocket endpoint, for
 * subscriptions over real sockets (SSE responses and graphql-ws): `base` is
 * `127.0.0.1:<port>/graphql`. `highWaterMark` is the server's sockets' and
 * responses' (node:http); `onRequest` sees every request first.
 */
export async function listenLive(
  t: TestApp,
  options: { highWaterMark?: number; onRequest?: (req: IncomingMessage, res: ServerResponse) => void } = {},
): Promise<{ base: string; close(): Promise<void> }> {
  const app = t.app as unknown as (req: IncomingMessage, res: ServerResponse) => void;
  const server = createServer(options.highWaterMark ? { highWaterMark: options.highWaterMark } : {}, (req, res) => {
    options.onRequest?.(req, res);
    void app(req, res);
  });
  const ws = attachWebSocket(server, t.app as unknown as Parameters<typeof attachWebSocket>[1], { logger: createLogger("silent") });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    base: `127.0.0.1:${(server.address() as AddressInfo).port}/graphql`,
    async close() {
      await ws.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The tenant's open streams on every replica (usage's SUBSCRIPTIONS). */
export async function subscriptionsUsed(t: TestApp, slug: string): Promise<number> {
  const r = await t.gql(`{ usage { quotas { resource used } } }`, { token: await t.memberToken(slug, "OWNER") });
  return r.body.data.usage.quotas.find((q: any) => q.resource === "SUBSCRIPTIONS").used;
}

/** A new deployment of the tenant (its first project unless `projectId`), by a DEVELOPER; its id. */
export async function createDeployment(t: TestApp, slug: string, options: { projectId?: string; branch?: string } = {}): Promise<string> {
  let projectId = options.projectId;
  if (!projectId) {
    const projects = await t.gql(`{ projects(first: 1) { edges { node { id } } } }`, { token: await t.memberToken(slug, "VIEWER") });
    projectId = projects.body.data.projects.edges[0].node.id as string;
  }
  const made = await t.gql(`mutation($p: ID!, $b: String) { createDeployment(input: { projectId: $p, branch: $b }) { deployment { id } } }`, {
    token: await t.memberToken(slug, "DEVELOPER"),
    variables: { p: projectId, b: options.branch ?? "main" },
  });
  if (made.body.errors) throw new Error(`createDeployment: ${JSON.stringify(made.body.errors)}`);
  return made.body.data.createDeployment.deployment.id;
}

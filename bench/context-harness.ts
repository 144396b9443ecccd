import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import type { Redis } from "ioredis";
import { createDatabases } from "../src/db/clients.ts";
import { CursorCodec } from "../src/infra/cursor.ts";
import { InFlight } from "../src/infra/in-flight.ts";
import { RateLimiter } from "../src/infra/rate-limit.ts";
import { RedisStore } from "../src/infra/store.ts";
import { buildContext, type ContextDeps } from "../src/tenancy/context.ts";
import { createTokenVerifier, hashApiKey } from "../src/tenancy/credentials.ts";
import { Directory } from "../src/tenancy/directory.ts";
import { ApiKeyUse } from "../src/tenancy/last-used.ts";
import { signDevToken } from "../src/tenancy/tokens.ts";
import type { Fixture } from "./seed.ts";

/**
 * The request context of this checkout (its src/) on the warm path, for
 * bench/context-cost.ts, which loads the harness of each checkout compared
 * into one process. Keys under a REDIS_KEY_PREFIX of its own; one API key
 * added to the first tenant (removed by close()).
 */
export async function contextHarness(fixture: Fixture, redisUrl: string, jwtSecret: string) {
  const dbs = createDatabases({ ownerUrl: fixture.url, pools: { platform: 2 } });
  const store = new RedisStore(redisUrl, { keyPrefix: `ctxcost:${randomBytes(4).toString("hex")}:` });
  const deps: ContextDeps = {
    app: dbs.app,
    platform: dbs.platform,
    store,
    directory: new Directory(dbs.platform, store),
    verifyToken: createTokenVerifier({ jwtSecret, jwtIssuer: undefined, jwtAudience: undefined, jwksUrl: undefined }),
    cursors: new CursorCodec(jwtSecret),
    rateLimiter: new RateLimiter(store),
    apiKeyUse: new ApiKeyUse(dbs.platform, new InFlight()),
  };
  const tenants = fixture.tenants.filter((t) => t !== fixture.noisy).slice(0, 20);
  const secret = `tgk_${randomBytes(6).toString("hex")}_${randomBytes(32).toString("base64url")}`;
  const key = await dbs.platform.apiKey.create({
    data: { tenantId: tenants[0]!.id, name: "context-cost", role: "VIEWER", prefix: secret.slice(0, 16), secretHash: hashApiKey(secret) },
  });
  const kinds: Record<string, Record<string, string>[]> = {
    token: await Promise.all(
      tenants.flatMap((t) => t.members.map(async (m) => ({ authorization: `Bearer ${await signDevToken({ secret: jwtSecret, sub: m.email, tenant: t.slug, ttl: "1h" })}` }))),
    ),
    "api key": [{ "x-api-key": secret }],
  };
  const context = (headers: Record<string, string>) =>
    buildContext(deps, new Request("http://localhost/graphql", { method: "POST", headers }), { requestId: "c" }, { ip: null });
  // Every entry cached (the cache writes after a miss are sent before the ping).
  for (const headers of Object.values(kinds)) for (const h of headers) await context(h);
  await store.ping();
  const stream = (store.redis as Redis & { stream: Socket }).stream;
  const write = stream.write;
  let writes = 0;
  stream.write = function (this: Socket, ...args: Parameters<Socket["write"]>) {
    writes++;
    return write.apply(this, args);
  } as Socket["write"];

  return {
    kinds: Object.keys(kinds),
    /** `requests` contexts of `kind`, `workers` at a time: CPU and wall µs per context, writes per context. */
    async measure(kind: string, requests: number, workers: number) {
      const headers = kinds[kind]!;
      let next = 0;
      const run = async () => {
        while (next < requests) await context(headers[next++ % headers.length]!);
      };
      writes = 0;
      const cpu = process.cpuUsage();
      const start = performance.now();
      await Promise.all(Array.from({ length: workers }, run));
      const wall = performance.now() - start;
      const used = process.cpuUsage(cpu);
      return { cpuUs: (used.user + used.system) / requests, wallUs: (wall * 1000 * workers) / requests, writes: writes / requests };
    },
    async close() {
      stream.write = write;
      await dbs.platform.apiKey.deleteMany({ where: { id: key.id } });
      await store.deletePattern("*");
      await store.close();
      await dbs.close();
    },
  };
}

import { createSecretKey, randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import { ensurePlatformAdmins } from "../../src/db/seed.ts";
import { createLogger } from "../../src/infra/logger.ts";
import { createTokenVerifier, hashApiKey } from "../../src/tenancy/credentials.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import { createTestApp, TEST_JWT_SECRET, type TestApp, tenantIdsBySlug } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { changeTenantRow, writeTenantRows } from "../helpers/placements.ts";

/**
 * SPEC section 4 and 7: bearer tokens (HS256, exp required, alg none and
 * algorithm confusion refused, issuer/audience, JWKS), subjects matched to
 * users, and API keys (hash lookup, expiry, revocation, grace period, tenant
 * fixed by the key).
 */

const hsKey = (secret: string) => createSecretKey(Buffer.from(secret, "utf8"));
const now = () => Math.floor(Date.now() / 1000);
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");

function hs256(claims: Record<string, unknown>, secret = TEST_JWT_SECRET) {
  return new SignJWT(claims).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(hsKey(secret));
}

const VIEWER_QUERY = `{ viewer { user { email } role tenant { slug } } }`;

function expectUnauthenticated(res: { status: number; body: { data?: unknown; errors?: any[] } }) {
  expect(res.status).toBe(401);
  expect(res.body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
  expect(res.body.data ?? null).toBeNull();
}

describe("bearer tokens", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  it("a valid HS256 token works", async () => {
    const res = await t.gql(VIEWER_QUERY, { token: await t.memberToken("acme", "DEVELOPER") });
    expect(res.status).toBe(200);
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.viewer).toEqual({ user: { email: "developer@acme.test" }, role: "DEVELOPER", tenant: { slug: "acme" } });
  });

  it("an expired token → 401 UNAUTHENTICATED", async () => {
    const token = await hs256({ sub: "developer@acme.test", tid: "acme", iat: now() - 3600, exp: now() - 60 });
    expectUnauthenticated(await t.gql(VIEWER_QUERY, { token }));
  });

  it("a token without exp → 401", async () => {
    const token = await hs256({ sub: "developer@acme.test", tid: "acme", iat: now() });
    expectUnauthenticated(await t.gql(VIEWER_QUERY, { token }));
  });

  it("a token without sub → 401", async () => {
    const token = await hs256({ tid: "acme", exp: now() + 600 });
    expectUnauthenticated(await t.gql(VIEWER_QUERY, { token }));
  });

  it("an alg: none token → 401", async () => {
    const claims = { sub: "owner@acme.test", tid: "acme", exp: now() + 600 };
    for (const token of [
      `${b64({ alg: "none", typ: "JWT" })}.${b64(claims)}.`,
      `${b64({ alg: "none" })}.${b64(claims)}`,
      `${b64({ alg: "NONE", typ: "JWT" })}.${b64(claims)}.`,
    ]) {
      expectUnauthenticated(await t.gql(VIEWER_QUERY, { token }));
    }
  });

  it("an HS256 token signed with another secret → 401", async () => {
    const token = await hs256({ sub: "owner@acme.test", tid: "acme", exp: now() + 600 }, "another-secret-0123456789abcdef0123456789");
    expectUnauthenticated(await t.gql(VIEWER_QUERY, { token }));
  });

  it("an RS256 token when no JWKS is configured → 401", async () => {
    const { privateKey } = await generateKeyPair("RS256");
    const token = await new SignJWT({ sub: "owner@acme.test", tid: "acme" })
      .setProtectedHeader({ alg: "RS256" })
      .setExpirationTime("10m")
      .sign(privateKey);
    expectUnauthenticated(await t.gql(VIEWER_QUERY, { token }));
  });

  it("a tampered payload (signature of another payload) → 401", async () => {
    const good = await t.memberToken("acme", "VIEWER");
    const [h, , s] = good.split(".");
    const forged = `${h}.${b64({ sub: "owner@acme.test", tid: "acme", exp: now() + 600 })}.${s}`;
    expectUnauthenticated(await t.gql(VIEWER_QUERY, { token: forged }));
  });

  it("garbage and malformed Authorization headers → 401", async () => {
    expectUnauthenticated(await t.gql(VIEWER_QUERY, { token: "not-a-jwt" }));
    expectUnauthenticated(await t.gql(VIEWER_QUERY, { headers: { authorization: "Basic dXNlcjpwYXNz" } }));
  });

  it("an unknown subject → 401", async () => {
    const token = await t.token("nobody@nowhere.test", "acme");
    expectUnauthenticated(await t.gql(VIEWER_QUERY, { token }));
    expectUnauthenticated(await t.gql(VIEWER_QUERY, { token: await t.token("nobody@nowhere.test") }));
  });

  it("PLATFORM_ADMIN_SUBJECTS (ensurePlatformAdmins at start) makes existing and new subjects platform admins", async () => {
    const viewer = `{ viewer { isPlatformAdmin } }`;
    expect((await t.gql(viewer, { token: await t.token("admin@wayne.test") })).body.data.viewer.isPlatformAdmin).toBe(false);
    await ensurePlatformAdmins(t.clients.platform, ["admin@wayne.test", "idp|operator-7"]);
    const directory = new Directory(t.clients.platform, t.store);
    await directory.invalidateUser("admin@wayne.test");
    expect((await t.gql(viewer, { token: await t.token("admin@wayne.test") })).body.data.viewer.isPlatformAdmin).toBe(true);
    expect((await t.gql(viewer, { token: await t.token("idp|operator-7") })).body.data.viewer.isPlatformAdmin).toBe(true);
    // Idempotent.
    await ensurePlatformAdmins(t.clients.platform, ["admin@wayne.test", "idp|operator-7"]);
    expect(await t.clients.platform.user.count({ where: { authSubject: "idp|operator-7" } })).toBe(1);
  });

  it("no credentials: viewer is UNAUTHENTICATED (no HTTP 401: nothing bad was sent)", async () => {
    const res = await t.gql(VIEWER_QUERY);
    expect(res.status).toBe(200);
    expect(res.body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
  });
});

describe("createTokenVerifier", () => {
  const base = { jwtSecret: TEST_JWT_SECRET, jwtIssuer: undefined, jwtAudience: undefined, jwksUrl: undefined };

  it("accepts a good token and returns sub and tid", async () => {
    const verify = createTokenVerifier(base);
    const exp = now() + 60;
    const token = await hs256({ sub: "a@b.test", tid: "acme", exp });
    // expiresAt: when an open subscription of this token must end.
    expect(await verify(token)).toEqual({ sub: "a@b.test", tid: "acme", expiresAt: exp * 1000 });
  });

  it("refuses a non-string tid", async () => {
    const verify = createTokenVerifier(base);
    await expect(verify(await hs256({ sub: "a@b.test", tid: 42, exp: now() + 60 }))).rejects.toMatchObject({
      extensions: { code: "UNAUTHENTICATED" },
    });
  });

  it("enforces the issuer when configured", async () => {
    const verify = createTokenVerifier({ ...base, jwtIssuer: "https://issuer.test/" });
    const good = await new SignJWT({ sub: "a@b.test" })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer("https://issuer.test/")
      .setExpirationTime("5m")
      .sign(hsKey(TEST_JWT_SECRET));
    expect((await verify(good)).sub).toBe("a@b.test");
    const wrong = await new SignJWT({ sub: "a@b.test" })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer("https://evil.test/")
      .setExpirationTime("5m")
      .sign(hsKey(TEST_JWT_SECRET));
    await expect(verify(wrong)).rejects.toMatchObject({ extensions: { code: "UNAUTHENTICATED" } });
    const missing = await hs256({ sub: "a@b.test", exp: now() + 60 });
    await expect(verify(missing)).rejects.toMatchObject({ extensions: { code: "UNAUTHENTICATED" } });
  });

  it("enforces the audience when configured", async () => {
    const verify = createTokenVerifier({ ...base, jwtAudience: "tenantgraph" });
    const sign = (aud?: string) => {
      const jwt = new SignJWT({ sub: "a@b.test" }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("5m");
      if (aud) jwt.setAudience(aud);
      return jwt.sign(hsKey(TEST_JWT_SECRET));
    };
    expect((await verify(await sign("tenantgraph"))).sub).toBe("a@b.test");
    await expect(verify(await sign("other-api"))).rejects.toMatchObject({ extensions: { code: "UNAUTHENTICATED" } });
    await expect(verify(await sign())).rejects.toMatchObject({ extensions: { code: "UNAUTHENTICATED" } });
  });

  describe("with a JWKS", () => {
    let server: Server;
    let jwksUrl: string;
    let signingKey: CryptoKey;
    let otherKey: CryptoKey;
    let esKey: CryptoKey;
    let jwksHits = 0;

    beforeAll(async () => {
      const rs = await generateKeyPair("RS256");
      const es = await generateKeyPair("ES256");
      const other = await generateKeyPair("RS256");
      signingKey = rs.privateKey;
      esKey = es.privateKey;
      otherKey = other.privateKey;
      const keys: JWK[] = [
        { ...(await exportJWK(rs.publicKey)), kid: "rs-1", alg: "RS256", use: "sig" },
        { ...(await exportJWK(es.publicKey)), kid: "es-1", alg: "ES256", use: "sig" },
      ];
      server = createServer((_req, res) => {
        jwksHits++;
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ keys }));
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
    });
    afterAll(async () => {
      server?.closeAllConnections();
      await new Promise((r) => server?.close(r));
    });

    const rsToken = (key: CryptoKey, kid: string, alg = "RS256") =>
      new SignJWT({ sub: "idp|user-1", tid: "acme" }).setProtectedHeader({ alg, kid }).setExpirationTime("5m").sign(key);

    it("verifies an RS256 token signed with a key of the JWKS", async () => {
      const verify = createTokenVerifier({ ...base, jwksUrl });
      expect(await verify(await rsToken(signingKey, "rs-1"))).toMatchObject({ sub: "idp|user-1", tid: "acme", expiresAt: expect.any(Number) });
      expect(jwksHits).toBeGreaterThan(0);
    });

    it("verifies an ES256 token of the JWKS", async () => {
      const verify = createTokenVerifier({ ...base, jwksUrl });
      expect((await verify(await rsToken(esKey, "es-1", "ES256"))).sub).toBe("idp|user-1");
    });

    it("refuses an RS256 token signed with a key not in the JWKS", async () => {
      const verify = createTokenVerifier({ ...base, jwksUrl });
      await expect(verify(await rsToken(otherKey, "rs-1"))).rejects.toMatchObject({ extensions: { code: "UNAUTHENTICATED" } });
      await expect(verify(await rsToken(otherKey, "unknown-kid"))).rejects.toMatchObject({
        extensions: { code: "UNAUTHENTICATED" },
      });
    });

    it("still verifies HS256 with JWT_SECRET and refuses alg none", async () => {
      const verify = createTokenVerifier({ ...base, jwksUrl });
      expect((await verify(await hs256({ sub: "x", exp: now() + 60 }))).sub).toBe("x");
      const none = `${b64({ alg: "none" })}.${b64({ sub: "x", exp: now() + 60 })}.`;
      await expect(verify(none)).rejects.toMatchObject({ extensions: { code: "UNAUTHENTICATED" } });
    });

    it("refuses HS256 signed with the JWKS public key material (algorithm confusion)", async () => {
      const verify = createTokenVerifier({ ...base, jwksUrl });
      const res = await fetch(jwksUrl);
      const { keys } = (await res.json()) as { keys: JWK[] };
      const confused = await new SignJWT({ sub: "x" })
        .setProtectedHeader({ alg: "HS256", kid: "rs-1" })
        .setExpirationTime("5m")
        .sign(createSecretKey(Buffer.from(JSON.stringify(keys[0]))));
      await expect(verify(confused)).rejects.toMatchObject({ extensions: { code: "UNAUTHENTICATED" } });
    });

    it("works end to end through the app: a JWKS token of a known subject", async () => {
      const t = await createTestApp({ store: isolatedStore() });
      try {
        const user = await t.clients.platform.user.findUniqueOrThrow({ where: { email: "viewer@acme.test" } });
        await t.clients.platform.user.update({ where: { id: user.id }, data: { authSubject: "idp|user-1" } });
        const app: App = createApp({
          app: t.clients.app,
          platform: t.clients.platform,
          store: t.store,
          directory: new Directory(t.clients.platform, t.store),
          verifyToken: createTokenVerifier({ ...base, jwksUrl }),
          baseDomain: "localhost",
          config: { graphiql: false, introspection: true, maxBodyBytes: 1 << 20, jwtSecret: TEST_JWT_SECRET, production: false },
          logger: createLogger("silent"),
          probes: {},
        });
        const call = async (token: string) => {
          const res = await app.fetch("http://localhost/graphql", {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
            body: JSON.stringify({ query: VIEWER_QUERY }),
          });
          return { status: res.status, body: (await res.json()) as any };
        };
        const ok = await call(await rsToken(signingKey, "rs-1"));
        expect(ok.body.errors).toBeUndefined();
        expect(ok.body.data.viewer).toEqual({ user: { email: "viewer@acme.test" }, role: "VIEWER", tenant: { slug: "acme" } });
        expectUnauthenticated(await call(await rsToken(otherKey, "rs-1")));
      } finally {
        await t.close();
        await t.store.close();
      }
    });
  });
});

describe("API keys (X-API-Key)", () => {
  let t: TestApp;
  let acmeId: string;
  let globexId: string;
  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    ({ acme: acmeId, globex: globexId } = (await tenantIdsBySlug(t)) as { acme: string; globex: string });
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  /** Inserts a key row directly (key management is another module's job). */
  async function insertKey(data: { tenantId?: string; role?: "VIEWER" | "DEVELOPER" | "ADMIN"; expiresAt?: Date; revokedAt?: Date } = {}) {
    const prefix = randomBytes(4).toString("hex");
    const secret = `tgk_${prefix}_${randomBytes(24).toString("base64url")}`;
    const tenantId = data.tenantId ?? acmeId;
    // In the key's tenant's placement (TEST_PLACEMENTS=spread), and in the directory.
    const row = await writeTenantRows(t.clients, tenantId, (db) => db.apiKey.create({
      data: {
        tenantId,
        name: `test key ${prefix}`,
        role: data.role ?? "DEVELOPER",
        prefix,
        secretHash: hashApiKey(secret),
        expiresAt: data.expiresAt,
        revokedAt: data.revokedAt,
      },
    }));
    return { secret, row };
  }

  const withKey = (secret: string, query = `{ tenant { slug } projects(first: 1) { totalCount } }`, headers: Record<string, string> = {}) =>
    t.gql(query, { headers: { "x-api-key": secret, ...headers } });

  it("a valid key reaches its own tenant with its role", async () => {
    const { secret } = await insertKey();
    const res = await withKey(secret);
    expect(res.status).toBe(200);
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.tenant.slug).toBe("acme");
    expect(res.body.data.projects.totalCount).toBeGreaterThan(0);
    expect(res.headers.get("x-tenant-id")).toBe(acmeId);
    expect(res.headers.get("x-ratelimit-limit")).toBe("1000");
  });

  it("the key's tenant may also be named explicitly (same tenant)", async () => {
    const { secret } = await insertKey();
    const res = await withKey(secret, `{ tenant { slug } }`, { "x-tenant-id": "acme" });
    expect(res.body.data?.tenant?.slug).toBe("acme");
  });

  it("an unknown key → 401", async () => {
    expectUnauthenticated(await withKey(`tgk_deadbeef_${randomBytes(24).toString("base64url")}`));
  });

  it("an expired key → 401", async () => {
    const { secret } = await insertKey({ expiresAt: new Date(Date.now() - 1000) });
    expectUnauthenticated(await withKey(secret));
  });

  it("a revoked key → 401, from the next request on once the cache is invalidated", async () => {
    const { secret, row } = await insertKey();
    expect((await withKey(secret)).status).toBe(200);
    await t.clients.platform.apiKey.update({
      where: { tenantId_id: { tenantId: row.tenantId, id: row.id } },
      data: { revokedAt: new Date() },
    });
    await new Directory(t.clients.platform, t.store).invalidateApiKeyHashes(row.secretHash);
    expectUnauthenticated(await withKey(secret));
  });

  it("a rotated key's previous secret works during the grace period, then not", async () => {
    const { secret: oldSecret, row } = await insertKey();
    const newSecret = `tgk_${row.prefix}_${randomBytes(24).toString("base64url")}`;
    const directory = new Directory(t.clients.platform, t.store);
    await t.clients.platform.apiKey.update({
      where: { tenantId_id: { tenantId: row.tenantId, id: row.id } },
      data: { secretHash: hashApiKey(newSecret), previousSecretHash: row.secretHash, previousExpiresAt: new Date(Date.now() + 60_000) },
    });
    await directory.invalidateApiKeyHashes(row.secretHash, hashApiKey(newSecret));
    expect((await withKey(newSecret)).body.data?.tenant?.slug).toBe("acme");
    expect((await withKey(oldSecret)).body.data?.tenant?.slug).toBe("acme");
    // Grace over.
    await t.clients.platform.apiKey.update({
      where: { tenantId_id: { tenantId: row.tenantId, id: row.id } },
      data: { previousExpiresAt: new Date(Date.now() - 1000) },
    });
    await directory.invalidateApiKeyHashes(row.secretHash, hashApiKey(newSecret));
    expectUnauthenticated(await withKey(oldSecret));
    expect((await withKey(newSecret)).body.data?.tenant?.slug).toBe("acme");
  });

  it("a key presented with another tenant's X-Tenant-ID or host → TENANT_ACCESS_DENIED", async () => {
    const { secret } = await insertKey();
    for (const headers of [{ "x-tenant-id": "globex" }, { "x-tenant-id": globexId }]) {
      const res = await withKey(secret, `{ tenant { slug } }`, headers);
      expect(res.body.errors?.[0]?.extensions?.code).toBe("TENANT_ACCESS_DENIED");
      expect(res.body.data ?? null).toBeNull();
    }
    const res = await t.app.fetch("http://globex.localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", host: "globex.localhost", "x-api-key": secret },
      body: JSON.stringify({ query: `{ tenant { slug } }` }),
    });
    expect(((await res.json()) as any).errors?.[0]?.extensions?.code).toBe("TENANT_ACCESS_DENIED");
  });

  it("a key of globex reaches globex only", async () => {
    // globex is FREE: API keys need the api_access feature (docs/tenant-config.md).
    await changeTenantRow(t.clients, globexId, (p) => p.tenant.update({ where: { id: globexId }, data: { featureOverrides: ["api_access"] } }));
    const { secret } = await insertKey({ tenantId: globexId, role: "VIEWER" });
    expect((await withKey(secret, `{ tenant { slug } }`)).body.data?.tenant?.slug).toBe("globex");
    expect((await withKey(secret, `{ tenant { slug } }`, { "x-tenant-id": "acme" })).body.errors?.[0]?.extensions?.code).toBe(
      "TENANT_ACCESS_DENIED",
    );
  });

  it("a bearer token and an API key together are refused", async () => {
    const { secret } = await insertKey();
    const res = await t.gql(`{ tenant { slug } }`, { token: await t.memberToken("acme", "OWNER"), headers: { "x-api-key": secret } });
    expect(res.body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    expect(res.status).toBeGreaterThanOrEqual(400);
  });
});

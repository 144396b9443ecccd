import { createServer, type Server } from "node:http";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";
import { createApp, type App } from "../../src/app.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import { TenantIdentityProviders } from "../../src/tenancy/tenant-idp.ts";
import { testAppDeps, type TestApp } from "./app.ts";

/**
 * Identity providers of the tenants' own (SSO) for a test: a JWKS server on
 * a free port (`<base>/<name>/jwks.json`, issuer `<base>/<name>`), ES256
 * keys made by `addIssuer`, tokens signed by `sign`, and an app over `t`'s
 * databases whose provider lookups have no cool-down and accept http.
 */
export interface SsoIssuers {
  app: App;
  /** http://127.0.0.1:<port> */
  base: string;
  /** Makes the keys of issuer `name` (served from then on). */
  addIssuer(name: string): Promise<void>;
  /** A token of issuer `name` for `sub`, audience "tenantgraph", valid 10 minutes. */
  sign(name: string, sub: string): Promise<string>;
  /** POST /graphql to the app as `token`. */
  gql(query: string, token: string, variables?: unknown): Promise<{ status: number; body: { data?: any; errors?: any[] } }>;
  close(): Promise<void>;
}

export async function startSsoIssuers(t: TestApp): Promise<SsoIssuers> {
  const keys = new Map<string, { privateKey: CryptoKey; jwk: JWK }>();
  const server: Server = createServer((req, res) => {
    const name = /^\/([a-z0-9-]+)\/jwks\.json$/.exec(req.url ?? "")?.[1];
    const key = name ? keys.get(name) : undefined;
    if (!key) return void res.writeHead(404).end();
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [key.jwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const directory = new Directory(t.clients.platform, t.store);
  const app = createApp(testAppDeps(t.clients, t.store, { directory, tenantIdps: new TenantIdentityProviders(directory, { cooldownMs: 0, allowHttp: true }) }));
  return {
    app,
    base,
    async addIssuer(name) {
      const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
      keys.set(name, { privateKey, jwk: { ...(await exportJWK(publicKey)), kid: name, alg: "ES256", use: "sig" } });
    },
    sign: (name, sub) =>
      new SignJWT({})
        .setProtectedHeader({ alg: "ES256", kid: name })
        .setSubject(sub)
        .setIssuer(`${base}/${name}`)
        .setAudience("tenantgraph")
        .setIssuedAt()
        .setExpirationTime("10m")
        .sign(keys.get(name)!.privateKey),
    async gql(query, token, variables) {
      const res = await app.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ query, variables }),
      });
      return { status: res.status, body: (await res.json()) as { data?: any; errors?: any[] } };
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

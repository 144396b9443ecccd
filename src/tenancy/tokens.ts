import { createSecretKey } from "node:crypto";
import { SignJWT } from "jose";

/** Signs a development HS256 token (npm run token, the demo tokens at start). */
export async function signDevToken(opts: {
  secret: string;
  sub: string;
  tenant?: string;
  ttl?: string;
  issuer?: string;
  audience?: string;
}): Promise<string> {
  const jwt = new SignJWT(opts.tenant ? { tid: opts.tenant } : {})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(opts.sub)
    .setIssuedAt()
    .setExpirationTime(opts.ttl ?? "1h");
  if (opts.issuer) jwt.setIssuer(opts.issuer);
  if (opts.audience) jwt.setAudience(opts.audience);
  return jwt.sign(createSecretKey(Buffer.from(opts.secret, "utf8")));
}

import { createHash, webcrypto } from "node:crypto";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from "jose";
import type { Config } from "../config.ts";
import { unauthenticated } from "../errors.ts";

/**
 * Verifies bearer tokens. HS256 with JWT_SECRET (the key imported once), and
 * RS256/ES256 through JWKS_URL when set. The algorithm list is fixed per key
 * type, so `alg: none` and HS/RS confusion are refused by construction.
 *
 * A client sends the same token with every request, so a verified token is
 * remembered (keyed by the whole token string, at most VERIFIED_CACHE_SIZE
 * of them) until its `exp` or for VERIFIED_TTL_MS, whichever is sooner: a
 * repeat costs a map lookup instead of an HMAC and a claims check. A token
 * that failed is never remembered.
 */
const VERIFIED_CACHE_SIZE = 10_000;
const VERIFIED_TTL_MS = 60_000;
export interface VerifiedToken {
  sub: string;
  tid?: string;
  /** The token's `exp`, ms since epoch (an open subscription ends then). */
  expiresAt?: number;
}

export function createTokenVerifier(config: Pick<Config, "jwtSecret" | "jwtIssuer" | "jwtAudience" | "jwksUrl">) {
  // Imported once as a WebCrypto key: jose verifies with WebCrypto, and a
  // KeyObject or raw secret would be re-imported on every call.
  const secret = webcrypto.subtle.importKey("raw", Buffer.from(config.jwtSecret, "utf8"), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  const verified = new Map<string, { token: VerifiedToken; until: number }>();
  const jwks = config.jwksUrl ? createRemoteJWKSet(new URL(config.jwksUrl)) : undefined;
  const common = {
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
    requiredClaims: ["exp", "sub"],
    clockTolerance: 5,
  };

  return async function verify(token: string): Promise<VerifiedToken> {
    const now = Date.now();
    const hit = verified.get(token);
    if (hit) {
      if (hit.until > now) return hit.token;
      verified.delete(token);
    }
    let payload: JWTPayload;
    try {
      const { alg } = decodeProtectedHeader(token);
      if (alg === "HS256") {
        ({ payload } = await jwtVerify(token, await secret, { ...common, algorithms: ["HS256"] }));
      } else if (jwks && (alg === "RS256" || alg === "ES256")) {
        ({ payload } = await jwtVerify(token, jwks, { ...common, algorithms: ["RS256", "ES256"] }));
      } else {
        throw new Error(`algorithm ${String(alg)} not accepted`);
      }
    } catch {
      // One message for every failure: which check failed is for the logs.
      throw unauthenticated("Invalid or expired token");
    }
    if (typeof payload.sub !== "string" || payload.sub === "") throw unauthenticated("Token has no subject");
    const tid = payload.tid;
    if (tid !== undefined && typeof tid !== "string") throw unauthenticated("Invalid tid claim");
    const result: VerifiedToken = { sub: payload.sub, tid, expiresAt: typeof payload.exp === "number" ? payload.exp * 1000 : undefined };
    if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!);
    // exp is required, so it is a number here; the cache never outlives it.
    verified.set(token, { token: result, until: Math.min(now + VERIFIED_TTL_MS, (payload.exp ?? 0) * 1000) });
    return result;
  };
}

export type TokenVerifier = ReturnType<typeof createTokenVerifier>;

/** API key secrets: `tgk_<prefix>_<secret>`; only the SHA-256 is stored. */
export const hashApiKey = (secret: string) => createHash("sha256").update(secret, "utf8").digest("hex");

import { createHash, createSecretKey, type KeyObject } from "node:crypto";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from "jose";
import type { Config } from "../config.ts";
import { unauthenticated } from "../errors.ts";

/**
 * Verifies bearer tokens. HS256 with JWT_SECRET (the key imported once), and
 * RS256/ES256 through JWKS_URL when set. The algorithm list is fixed per key
 * type, so `alg: none` and HS/RS confusion are refused by construction.
 */
export interface VerifiedToken {
  sub: string;
  tid?: string;
}

export function createTokenVerifier(config: Pick<Config, "jwtSecret" | "jwtIssuer" | "jwtAudience" | "jwksUrl">) {
  const secret: KeyObject = createSecretKey(Buffer.from(config.jwtSecret, "utf8"));
  const jwks = config.jwksUrl ? createRemoteJWKSet(new URL(config.jwksUrl)) : undefined;
  const common = {
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
    requiredClaims: ["exp", "sub"],
    clockTolerance: 5,
  };

  return async function verify(token: string): Promise<VerifiedToken> {
    let payload: JWTPayload;
    try {
      const { alg } = decodeProtectedHeader(token);
      if (alg === "HS256") {
        ({ payload } = await jwtVerify(token, secret, { ...common, algorithms: ["HS256"] }));
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
    return { sub: payload.sub, tid };
  };
}

export type TokenVerifier = ReturnType<typeof createTokenVerifier>;

/** API key secrets: `tgk_<prefix>_<secret>`; only the SHA-256 is stored. */
export const hashApiKey = (secret: string) => createHash("sha256").update(secret, "utf8").digest("hex");

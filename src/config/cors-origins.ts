import { ConfigError, str, type Env } from "./env.ts";

/** CORS_ORIGINS: the origins allowed to call cross-origin, comma-separated; `*` any origin without credentials. */
export function corsOrigins(env: Env): string[] {
  const raw = str(env, "CORS_ORIGINS");
  if (raw === undefined) return [];
  return raw.split(",").map((entry) => {
    const text = entry.trim();
    if (text === "*") return text;
    let origin: string;
    try {
      origin = new URL(text).origin;
    } catch {
      throw new ConfigError("CORS_ORIGINS", `not an origin: "${text}"`);
    }
    // An origin is scheme://host[:port] exactly, as browsers send it.
    if (origin === "null" || origin !== text.replace(/\/$/, "").toLowerCase()) {
      throw new ConfigError("CORS_ORIGINS", `expected scheme://host[:port], got "${text}"`);
    }
    return origin;
  });
}

import { ConfigError, str, type Env } from "./env.ts";

/** `PLACEMENT_DATABASE_URLS`: `name=postgresql://...` pairs, comma-separated. */
function parsePlacementServers(value: string | undefined): Record<string, string> {
  const servers: Record<string, string> = {};
  for (const part of (value ?? "").split(",").map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    const name = part.slice(0, eq).trim();
    const url = part.slice(eq + 1).trim();
    if (eq < 1 || !/^[a-z][a-z0-9_-]{0,39}$/.test(name) || name === "default") throw new Error(`PLACEMENT_DATABASE_URLS: bad server name in "${name}"`);
    if (!/^postgres(ql)?:\/\//.test(url)) throw new Error(`PLACEMENT_DATABASE_URLS: ${name} needs a postgresql:// URL`);
    servers[name] = url;
  }
  return servers;
}

export function placementServers(env: Env): Record<string, string> {
  try {
    return parsePlacementServers(str(env, "PLACEMENT_DATABASE_URLS"));
  } catch (err) {
    throw new ConfigError("PLACEMENT_DATABASE_URLS", (err as Error).message);
  }
}

import { isIPv4, isIPv6 } from "node:net";
import { ConfigError, str, type Env } from "./env.ts";

/**
 * TRUST_PROXY: `off` (the default), a hop count (that many proxies in front,
 * each appending to X-Forwarded-For), or the proxies' addresses and CIDR
 * ranges (any hop from one of them is believed, walking from the socket).
 */
export type TrustProxy =
  | { kind: "off" }
  | { kind: "hops"; hops: number }
  | { kind: "addresses"; ranges: { address: string; prefix: number; family: "ipv4" | "ipv6" }[] };

export function trustProxy(env: Env): TrustProxy {
  const raw = str(env, "TRUST_PROXY");
  if (raw === undefined || ["off", "false", "0", "no"].includes(raw.toLowerCase())) return { kind: "off" };
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    if (hops > 32) throw new ConfigError("TRUST_PROXY", `a hop count of at most 32, got ${hops}`);
    return { kind: "hops", hops };
  }
  const ranges = raw.split(",").map((entry) => {
    const text = entry.trim();
    const [address = "", prefixText] = text.split("/");
    const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : null;
    if (!family) throw new ConfigError("TRUST_PROXY", `expected off, a hop count or IP addresses/CIDRs, got "${text}"`);
    const max = family === "ipv4" ? 32 : 128;
    const prefix = prefixText === undefined ? max : /^\d+$/.test(prefixText) ? Number(prefixText) : NaN;
    if (!(prefix >= 0 && prefix <= max)) throw new ConfigError("TRUST_PROXY", `bad prefix length in "${text}"`);
    return { address, prefix, family } as const;
  });
  return { kind: "addresses", ranges };
}

/** Reading one variable of the environment: trimmed, empty as unset, checked; a bad value is a ConfigError naming it. */

export class ConfigError extends Error {
  constructor(readonly variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
  }
}

export type Env = Record<string, string | undefined>;

export function str(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

export function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = str(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `expected an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `expected ${min}..${max}, got ${n}`);
  return n;
}

export function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = str(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (["1", "true", "yes", "on"].includes(raw)) return true;
  if (["0", "false", "no", "off"].includes(raw)) return false;
  throw new ConfigError(name, `expected true or false, got "${raw}"`);
}

export function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, "not a valid URL");
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `expected a ${protocols.join(" or ")} URL, got ${parsed.protocol}`);
  }
  return raw;
}

type PlanName = "FREE" | "PRO" | "ENTERPRISE";

/** One setting per plan, `<prefix>_FREE`, `_PRO` and `_ENTERPRISE`, each read by `read(name, plan)`. */
export function perPlan<T>(prefix: string, read: (name: string, plan: PlanName) => T): Record<PlanName, T> {
  return { FREE: read(`${prefix}_FREE`, "FREE"), PRO: read(`${prefix}_PRO`, "PRO"), ENTERPRISE: read(`${prefix}_ENTERPRISE`, "ENTERPRISE") };
}

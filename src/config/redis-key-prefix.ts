import { ConfigError, str, type Env } from "./env.ts";

/** The longest REDIS_KEY_PREFIX: it is sent with every key. */
export const MAX_REDIS_KEY_PREFIX = 64;

/**
 * REDIS_KEY_PREFIX: the namespace of this deployment's keys and channels in a
 * Redis shared with other deployments (docs/scale-out.md, "Sharing one
 * Redis"); empty (the default): the keys as they always were.
 *
 * Letters, digits, `_`, `-` and `:`, ending with `:`. No braces: a tenant's
 * `{<tenantId>}` stays the hash tag of its keys on a cluster. No glob
 * characters: the prefix goes as it is into SCAN patterns. The closing `:`
 * keeps namespaces apart whatever the keys after them: `a` and `ab` would
 * not be (`a` + `bt:...` is `ab` + `t:...`).
 */
export function redisKeyPrefix(env: Env): string {
  const raw = str(env, "REDIS_KEY_PREFIX");
  if (raw === undefined) return "";
  if (raw.length > MAX_REDIS_KEY_PREFIX || !/^[A-Za-z0-9:_-]*:$/.test(raw)) {
    throw new ConfigError(
      "REDIS_KEY_PREFIX",
      `expected up to ${MAX_REDIS_KEY_PREFIX} letters, digits, "_", "-" or ":", ending with ":" (e.g. "staging:"), got "${raw}"`,
    );
  }
  return raw;
}

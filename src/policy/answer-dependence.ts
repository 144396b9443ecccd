/**
 * A field extension saying that a field's answer depends on who asks, beyond
 * the tenant's data and the field's `@auth` requirement: "caller" (the
 * answer names or describes the caller: `viewer`, whose `role` is the
 * caller's) or "role" (a resolver that reads the caller's role to shape its
 * answer). The response cache keeps the caller, or the role, in the key of a
 * document selecting such a field (src/http/response-cache-scope.ts,
 * docs/response-cache.md, "Which entries roles share").
 *
 * `t.field({ ..., extensions: { [DEPENDS_ON]: "caller" } })`
 */
export const DEPENDS_ON = "tenantgraph.dependsOn";

export type AnswerDependence = "caller" | "role";

/** What a field's extensions declare (undefined: nothing beyond its @auth). */
export function answerDependence(extensions: Readonly<Record<string, unknown>> | null | undefined): AnswerDependence | undefined {
  const value = extensions?.[DEPENDS_ON];
  if (value === undefined) return undefined;
  if (value !== "caller" && value !== "role") throw new Error(`${DEPENDS_ON}: expected "caller" or "role", got ${String(value)}`);
  return value;
}

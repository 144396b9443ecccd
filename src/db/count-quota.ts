/**
 * The one definition of a count quota's lock and count (SPEC section 6):
 * every writer that adds a counted row (createProject, inviteMember, a first
 * SSO login, in the main database or a placement) takes this lock of the
 * tenant and resource, held until its transaction ends, and counts after it.
 */
export type CountResource = "PROJECTS" | "SEATS";

/** Runs one statement with positional parameters and answers its rows. */
export type CountQuery = <R>(sql: string, params: unknown[]) => Promise<R[]>;

const LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext($1))";
const COUNT_SQL: Record<CountResource, string> = {
  PROJECTS: "SELECT count(*)::int AS n FROM projects WHERE tenant_id = $1::uuid",
  SEATS: "SELECT count(*)::int AS n FROM memberships WHERE tenant_id = $1::uuid",
};

/** Serializes the count-quota checks of one tenant and resource until the transaction ends. */
export async function lockCountQuota(run: (sql: string, params: unknown[]) => Promise<unknown>, tenantId: string, resource: CountResource): Promise<void> {
  await run(LOCK_SQL, [`${tenantId}:quota:${resource}`]);
}

/** What the quota counts now (after the lock: a fresh snapshot in READ COMMITTED). */
export async function countUsage(run: CountQuery, tenantId: string, resource: CountResource): Promise<number> {
  const [row] = await run<{ n: number }>(COUNT_SQL[resource], [tenantId]);
  return row?.n ?? 0;
}

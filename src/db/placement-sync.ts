import type { Placement } from "../generated/prisma/enums.ts";
import { placementKey, placementOf, type PlacementAdmin, type PlacementRef } from "./placement-admin.ts";
import { beginCopy, pgQuery, readRows, recountStats, writeRows, type Query } from "./placement-rows.ts";
import { countUsage, lockCountQuota } from "./count-quota.ts";

/**
 * Keeping a placed tenant's directory rows the same in its placement and in
 * the main database (docs/placement.md, "The directory"). The placement
 * decides (the request's authorization facts are read there); the main
 * database's copy is what the directory finds a tenant, a member, an API
 * key or an identity provider by, before the tenant is known.
 *
 *   - toPlacement: a platform change of the tenant (status, plan, limits,
 *     features, domain, identity provider, cache TTL), in the platform's
 *     transaction before it commits: the tenants row, its limit overrides,
 *     its cache TTL and the platform's audit entries go to the placement,
 *     whose response cache generation is bumped.
 *   - toDirectory: after a tenant's own mutation committed (members, API
 *     keys): memberships, API keys and the identities they name come back
 *     to the main database. It answers what changed, for the cache
 *     invalidations. (Its identity provider is claimed in the main database
 *     before its change commits: src/tenancy/issuer-claim.ts.)
 */

/** The lock one tenant's directory syncs and a move's directory switch take in the main database (a transaction's). */
export const placementSyncLockSql = (tenantIdLiteral: string) => `hashtext('placement-sync:' || ${tenantIdLiteral})`;

const IDENT = /^[a-z_][a-z0-9_]*$/;
const TENANT_OWNED = ["idp_issuer", "idp_jwks_url", "idp_audience"];

const owner = (admin: PlacementAdmin, ref: PlacementRef) => admin.ownerClient(ref);

const schemaOf = (ref: PlacementRef) => (ref.placement === "SCHEMA" ? ref.name : null);

/** One transaction of the placement's owner connection, in the copy's settings (src/db/placement-rows.ts beginCopy): `write`, then COMMIT. */
async function inPlacement(admin: PlacementAdmin, ref: PlacementRef, tenantId: string, write: (target: Query) => Promise<void>): Promise<void> {
  const client = await owner(admin, ref);
  try {
    await beginCopy(client, tenantId, schemaOf(ref));
    await write(pgQuery(client));
    await client.query("COMMIT");
    client.release();
  } catch (err) {
    client.release(err as Error);
    throw err;
  }
}

/** Identities as a placement or the directory may hold a copy of them: never with platform powers (a global fact, the main database's). */
const withoutPlatformPowers = (users: unknown[]) => (users as Record<string, unknown>[]).map((u) => ({ ...u, is_platform_admin: false }));

/** UPDATE of the tenants row from its JSON copy, on these columns. */
async function updateTenant(target: Query, row: Record<string, unknown>, columns: string[]): Promise<void> {
  const set = columns.filter((c) => IDENT.test(c) && c !== "id").map((c) => `"${c}" = r."${c}"`);
  if (set.length === 0) return;
  await target(`UPDATE tenants t SET ${set.join(", ")} FROM jsonb_populate_record(NULL::tenants, $1::jsonb) r WHERE t.id = r.id`, [JSON.stringify(row)]);
}

/**
 * Within the platform transaction `source` (main database): the tenant's
 * platform-owned rows into its placement. `identityProvider`: the change is
 * a platform admin's setTenantIdentityProvider, whose columns go too (any
 * other change leaves them to the tenant).
 */
export async function syncToPlacement(admin: PlacementAdmin, ref: PlacementRef, tenantId: string, source: Query, options: { identityProvider?: boolean } = {}): Promise<void> {
  await inPlacement(admin, ref, tenantId, async (target) => {
    const [tenant] = (await readRows(source, "tenants", tenantId)) as Record<string, unknown>[];
    // The identity-provider columns are the tenant's own (set in its placement): never overwritten from the directory's copy.
    if (tenant) await updateTenant(target, tenant, Object.keys(tenant).filter((c) => options.identityProvider || !TENANT_OWNED.includes(c)));
    await target(`DELETE FROM tenant_limit_overrides WHERE tenant_id = $1::uuid`, [tenantId]);
    await writeRows(target, "tenant_limit_overrides", await readRows(source, "tenant_limit_overrides", tenantId));
    const [cache] = (await readRows(source, "tenant_cache_generations", tenantId)) as { ttl_seconds?: number | null }[];
    if (cache) {
      await target(
        `INSERT INTO tenant_cache_generations (tenant_id, ttl_seconds) VALUES ($1::uuid, $2)
           ON CONFLICT (tenant_id) DO UPDATE SET ttl_seconds = EXCLUDED.ttl_seconds`,
        [tenantId, cache.ttl_seconds ?? null],
      );
    }
    // The platform's entries about the tenant (access transparency), once each.
    const audit = await source<{ rows: unknown[] }>(
      `SELECT coalesce(jsonb_agg(to_jsonb(a)), '[]'::jsonb) AS rows FROM audit_log a WHERE tenant_id = $1::uuid AND cross_tenant`,
      [tenantId],
    );
    const entries = audit[0]?.rows ?? [];
    if (entries.length) {
      await target(`INSERT INTO audit_log SELECT * FROM jsonb_populate_recordset(NULL::audit_log, $1::jsonb) ON CONFLICT DO NOTHING`, [JSON.stringify(entries)]);
    }
    // Any platform change may change answers: the placement's cached responses go.
    await target(`SELECT app_bump_cache_generations(ARRAY[$1::uuid])`, [tenantId]);
  });
}

/** A first SSO login found the tenant's seats taken in its placement: nothing was written there. */
export class NoSeatLeft extends Error {
  constructor() {
    super("no seat left in the tenant's placement");
  }
}

/**
 * Within the main database's transaction `source` (before it commits): a
 * member the main database made for the tenant (a first SSO login's
 * identity and VIEWER membership) into its placement, which decides its
 * requests. Only a new identity is written there (never over one the
 * placement has), never with platform powers; the placement's cached
 * responses go (its member list changed).
 *
 * `seats` (the tenant's SEATS limit, null = unlimited) is checked in the
 * placement, where the memberships are authoritative: under the SEATS lock
 * inviteMember takes there (src/db/count-quota.ts), the
 * tenant's memberships are counted before the insert; none left throws
 * NoSeatLeft (nothing written).
 */
export async function syncMemberToPlacement(admin: PlacementAdmin, ref: PlacementRef, tenantId: string, userId: string, source: Query, seats: number | null = null): Promise<void> {
  await inPlacement(admin, ref, tenantId, async (target) => {
    await lockCountQuota(target, tenantId, "SEATS");
    if (seats !== null && (await countUsage(target, tenantId, "SEATS")) >= seats) throw new NoSeatLeft();
    const rows = async (table: "users" | "memberships", where: string) =>
      (await source<{ rows: unknown[] }>(`SELECT coalesce(jsonb_agg(to_jsonb(x)), '[]'::jsonb) AS rows FROM ${table} x WHERE ${where}`, [tenantId, userId]))[0]?.rows ?? [];
    await writeRows(target, "users", withoutPlatformPowers(await rows("users", "$1::uuid IS NOT NULL AND id = $2::uuid")));
    await writeRows(target, "memberships", await rows("memberships", "tenant_id = $1::uuid AND user_id = $2::uuid"));
    await recountStats(target, tenantId);
    await target(`SELECT app_bump_cache_generations(ARRAY[$1::uuid])`, [tenantId]);
  });
}

export interface DirectoryChanges {
  /** Users whose membership in the tenant was added, changed or removed. */
  userIds: string[];
  /** Secret hashes of API keys added, changed or removed. */
  keyHashes: string[];
  /** Auth subjects of identities made in the placement. */
  subjects: string[];
}

interface MemberRow { id: string; user_id: string; role: string }
interface KeyRow { id: string; secret_hash: string; previous_secret_hash: string | null; revoked_at: string | null; expires_at: string | null; previous_expires_at: string | null; role: string }
interface UserRow { id: string; email: string; auth_subject: string }

const byId = <T extends { id: string }>(rows: T[]) => new Map(rows.map((r) => [r.id, JSON.stringify(r)]));

/**
 * After the tenant's own mutation committed in its placement: its
 * memberships, API keys and their identities into the main database. An identity made in the placement for an e-mail
 * the main database knows under another id is rewritten in the placement to
 * that id first, so one person stays one user.
 */
export async function syncToDirectory(admin: PlacementAdmin, ref: PlacementRef, tenantId: string): Promise<DirectoryChanges> {
  const main = await admin.ownerClient({ placement: "POOLED", server: null, name: null }, "directory");
  const placed = await owner(admin, ref).catch((err) => {
    main.release();
    throw err;
  });
  try {
    await beginCopy(main, tenantId, null);
    // One sync of a tenant at a time, each reading the placement after the previous one committed.
    await main.query(`SELECT pg_advisory_xact_lock(${placementSyncLockSql("$1::text")})`, [tenantId]);
    // A move switches the directory under the same lock: once it names
    // another placement, the old copy's rows are stale and never copied over
    // the main database's (which may hold the live ones by now).
    const [current] = (await main.query<{ placement: Placement; placementServer: string | null; placementName: string | null }>(
      `SELECT placement, placement_server AS "placementServer", placement_name AS "placementName" FROM tenants WHERE id = $1::uuid`,
      [tenantId],
    )).rows;
    if (!current || placementKey(placementOf(current)) !== placementKey(ref)) {
      await main.query("ROLLBACK");
      placed.release();
      main.release();
      return { userIds: [], keyHashes: [], subjects: [] };
    }
    await beginCopy(placed, tenantId, schemaOf(ref));
    const from = pgQuery(placed);
    const to = pgQuery(main);
    // One person, one id: identities made in the placement that the main database knows by e-mail.
    const users = (await readRows(from, "users", tenantId)) as UserRow[];
    const known = users.length
      ? await to<UserRow>(`SELECT id::text, email, auth_subject FROM users WHERE email = ANY($1::text[])`, [users.map((u) => u.email)])
      : [];
    for (const k of known) {
      const local = users.find((u) => u.email === k.email);
      if (!local || local.id === k.id) continue;
      await from(`UPDATE users SET email = id::text || '@replaced.invalid', auth_subject = id::text || '@replaced.invalid' WHERE id = $1::uuid`, [local.id]);
      const [identity] = await to<{ row: unknown }>(`SELECT to_jsonb(u) AS row FROM users u WHERE id = $1::uuid`, [k.id]);
      await writeRows(from, "users", [identity!.row]);
      await from(`UPDATE memberships SET user_id = $2::uuid WHERE user_id = $1::uuid`, [local.id, k.id]);
      await from(`UPDATE deployments SET created_by_id = $2::uuid WHERE created_by_id = $1::uuid`, [local.id, k.id]);
      await from(`DELETE FROM users WHERE id = $1::uuid`, [local.id]);
    }
    const [beforeMembers, beforeKeys] = [
      (await readRows(to, "memberships", tenantId)) as MemberRow[],
      (await readRows(to, "api_keys", tenantId)) as KeyRow[],
    ];
    const [members, keys, ids] = [
      (await readRows(from, "memberships", tenantId)) as MemberRow[],
      (await readRows(from, "api_keys", tenantId)) as KeyRow[],
      (await readRows(from, "users", tenantId)) as UserRow[],
    ];
    // Only new identities (an existing one is never overwritten), and never
    // with platform powers: a placement is not the authority for a global fact.
    const made = await writeRows(to, "users", withoutPlatformPowers(ids));
    await to(`DELETE FROM memberships WHERE tenant_id = $1::uuid`, [tenantId]);
    await writeRows(to, "memberships", members);
    await to(`DELETE FROM api_keys WHERE tenant_id = $1::uuid`, [tenantId]);
    await writeRows(to, "api_keys", keys);
    await recountStats(to, tenantId);
    // Not the identity-provider columns: the main database's are the registry
    // of issuers, claimed there before the tenant's change commits
    // (src/tenancy/issuer-claim.ts); a copy here could undo a claim.
    await placed.query("COMMIT");
    await main.query("COMMIT");
    const diff = <T extends { id: string }>(a: T[], b: T[]) => {
      const [x, y] = [byId(a), byId(b)];
      return [...new Set([...x.keys(), ...y.keys()])].filter((id) => x.get(id) !== y.get(id));
    };
    const changedMembers = new Set(diff(beforeMembers, members));
    const changedKeys = new Set(diff(beforeKeys, keys));
    const changes = {
      userIds: [...beforeMembers, ...members].filter((m) => changedMembers.has(m.id)).map((m) => m.user_id),
      keyHashes: [...beforeKeys, ...keys].filter((k) => changedKeys.has(k.id)).flatMap((k) => [k.secret_hash, k.previous_secret_hash ?? ""]).filter(Boolean),
      subjects: made ? ids.map((u) => u.auth_subject) : [],
    };
    placed.release();
    main.release();
    return changes;
  } catch (err) {
    placed.release(err as Error);
    main.release(err as Error);
    throw err;
  }
}

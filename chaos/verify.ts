import pg from "pg";
import type { MutationRecord, Stats, TenantModel } from "./workload.ts";
import { gid } from "./workload.ts";

/**
 * The end-of-run checks against the database itself (as the superuser, so
 * RLS hides nothing), once every fault is healed:
 * - the ledger: each acknowledged mutation is stored (its unique name found,
 *   in its own tenant; membership and key changes by their audit entry,
 *   written in the same transaction); nothing refused is stored; what is
 *   stored without an answer is allowed only where a SIGTERM cut the answer;
 * - final states: removed members are gone, downgraded ones are VIEWER, revoked keys revoked;
 * - ownership: every row an answer named belongs to the tenant that saw it.
 */

export interface LedgerFigures {
  mutations: number;
  acknowledged: number;
  /** Acknowledged only by a replay of the stored answer (an earlier attempt's answer was lost or refused with 503). */
  acknowledgedOnReplay: number;
  lost: number;
  storedRefused: number;
  storedUnacknowledgedCutByKill: number;
  storedUnacknowledgedOther: number;
  unacknowledgedNotStored: number;
  wrongTenant: number;
}

export interface OwnershipFigures {
  rowsChecked: number;
  leaked: number;
  unverified: number;
}

export interface VerifyResult {
  ledger: LedgerFigures;
  finalStateMismatches: number;
  ownership: OwnershipFigures;
}

const TABLES: Record<string, string> = {
  Project: "projects",
  Deployment: "deployments",
  Workflow: "workflows",
  Membership: "memberships",
  ApiKey: "api_keys",
  AuditLogEntry: "audit_log",
};

type Violate = (kind: string, detail: Record<string, unknown>) => void;

export async function verify(url: string, stats: Stats, tenants: TenantModel[], violate: Violate): Promise<VerifyResult> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const ledger = await checkLedger(db, stats.mutations, violate);
    const finalStateMismatches = await checkFinalStates(db, tenants, violate);
    const ownership = await checkOwnership(db, stats, tenants, violate);
    return { ledger, finalStateMismatches, ownership };
  } finally {
    await db.end();
  }
}

async function checkLedger(db: pg.Client, records: MutationRecord[], violate: Violate): Promise<LedgerFigures> {
  const names = (op: string) => records.filter((r) => r.op === op).map((r) => r.name!);
  const stored = new Map<string, string>(); // name or request id -> tenant id
  for (const r of (await db.query(`SELECT name, tenant_id::text FROM projects WHERE name = ANY($1)`, [names("createProject")])).rows) {
    stored.set(`createProject:${r.name}`, r.tenant_id);
  }
  for (const r of (await db.query(`SELECT branch, tenant_id::text FROM deployments WHERE branch = ANY($1)`, [names("createDeployment")])).rows) {
    stored.set(`createDeployment:${r.branch}`, r.tenant_id);
  }
  const audited = new Map<string, string>();
  for (const r of (await db.query(`SELECT request_id, tenant_id::text FROM audit_log WHERE request_id = ANY($1)`, [records.flatMap((m) => m.requestIds)])).rows) {
    audited.set(r.request_id, r.tenant_id);
  }
  const f: LedgerFigures = {
    mutations: records.length,
    acknowledged: 0,
    acknowledgedOnReplay: 0,
    lost: 0,
    storedRefused: 0,
    storedUnacknowledgedCutByKill: 0,
    storedUnacknowledgedOther: 0,
    unacknowledgedNotStored: 0,
    wrongTenant: 0,
  };
  for (const m of records) {
    const byRow = m.op === "createProject" || m.op === "createDeployment";
    // The audit entry carries the request id of the attempt that committed.
    const auditedIn = m.requestIds.filter((id) => audited.has(id));
    const owner = byRow ? stored.get(`${m.op}:${m.name}`) : audited.get(auditedIn[0] ?? "");
    const detail = { op: m.op, requestId: m.requestId, attempts: m.requestIds, name: m.name, caller: m.caller, verdict: m.verdict, codes: m.codes, error: m.error };
    if (byRow && (owner !== undefined) !== auditedIn.length > 0) {
      violate("audit-mismatch", { ...detail, rowStored: owner !== undefined, auditStored: auditedIn.length > 0 });
    }
    // Idempotency: one mutation, however many attempts, is stored at most once.
    if (auditedIn.length > 1) violate("duplicate", { ...detail, auditedIn });
    if (owner !== undefined && owner !== m.tenantId) {
      f.wrongTenant++;
      violate("leak", { ...detail, note: "stored in another tenant", storedIn: owner, expected: m.tenantId });
    }
    const isStored = owner !== undefined;
    if (m.verdict === "ok") {
      f.acknowledged++;
      if (m.ackedOnReplay) f.acknowledgedOnReplay++;
      if (!isStored) {
        f.lost++;
        violate("lost", detail);
      }
    } else if (m.verdict === "refused" || m.verdict === "unavailable" || m.verdict === "not-sent") {
      if (isStored) {
        f.storedRefused++;
        violate("stored-refused", detail);
      }
    } else if (isStored) {
      if (m.cutByKill) f.storedUnacknowledgedCutByKill++;
      else {
        f.storedUnacknowledgedOther++;
        violate("stored-unacknowledged", detail);
      }
    } else {
      f.unacknowledgedNotStored++;
    }
  }
  return f;
}

async function checkFinalStates(db: pg.Client, tenants: TenantModel[], violate: Violate): Promise<number> {
  const { rows: members } = await db.query(`SELECT id::text, role::text FROM memberships`);
  const role = new Map(members.map((r) => [r.id as string, r.role as string]));
  const { rows: keys } = await db.query(`SELECT id::text, revoked_at FROM api_keys`);
  const revoked = new Map(keys.map((r) => [r.id as string, r.revoked_at !== null]));
  let mismatches = 0;
  const mismatch = (detail: Record<string, unknown>) => {
    mismatches++;
    violate("final-state", detail);
  };
  for (const t of tenants) {
    for (const c of t.transients) {
      if (!c.membershipId) continue;
      const now = role.get(c.membershipId);
      if (c.state === "removed" && now !== undefined) mismatch({ caller: c.label, expected: "removed", found: now, by: c.revokedBy });
      if (c.state === "downgraded" && now !== "VIEWER") mismatch({ caller: c.label, expected: "VIEWER", found: now ?? "no membership", by: c.revokedBy });
      if (c.state === "active" && now !== "DEVELOPER") mismatch({ caller: c.label, expected: "DEVELOPER", found: now ?? "no membership" });
    }
    for (const k of t.keys) {
      if (!k.apiKeyId) continue;
      const isRevoked = revoked.get(k.apiKeyId);
      if (k.state === "revoked" && isRevoked !== true) mismatch({ caller: k.label, expected: "revoked", found: isRevoked === undefined ? "no key" : "active", by: k.revokedBy });
      if (k.state === "active" && isRevoked !== false) mismatch({ caller: k.label, expected: "active", found: isRevoked === undefined ? "no key" : "revoked" });
    }
  }
  return mismatches;
}

async function checkOwnership(db: pg.Client, stats: Stats, tenants: TenantModel[], violate: Violate): Promise<OwnershipFigures> {
  const byType = new Map<string, string[]>();
  for (const key of stats.seen.keys()) {
    const [type, id] = key.split(":") as [string, string];
    byType.set(type, [...(byType.get(type) ?? []), id]);
  }
  const owner = new Map<string, string>(); // "Type:id" -> tenant id, or "user:<email>" for users
  for (const [type, ids] of byType) {
    if (type === "Tenant") for (const id of ids) owner.set(`Tenant:${id}`, id);
    else if (type === "User") {
      const { rows } = await db.query(`SELECT id::text, email FROM users WHERE id = ANY($1::uuid[])`, [ids]);
      for (const r of rows) owner.set(`User:${r.id}`, `user:${r.email}`);
    } else if (TABLES[type]) {
      const { rows } = await db.query(`SELECT id::text, tenant_id::text FROM ${TABLES[type]} WHERE id = ANY($1::uuid[])`, [ids]);
      for (const r of rows) owner.set(`${type}:${r.id}`, r.tenant_id);
      // Rows deleted since (a removed member's membership): their tenant from the audit entry that created them.
      const missing = ids.filter((id) => !owner.has(`${type}:${id}`));
      if (missing.length) {
        const { rows: audited } = await db.query(
          `SELECT DISTINCT target_id, tenant_id::text FROM audit_log WHERE target_id = ANY($1)`,
          [missing.map((id) => gid(type, id))],
        );
        for (const r of audited) owner.set(`${type}:${Buffer.from(r.target_id, "base64").toString("utf8").split(":")[1]}`, r.tenant_id);
      }
    }
  }
  const slugOf = new Map(tenants.map((t) => [t.id, t.slug]));
  const f: OwnershipFigures = { rowsChecked: 0, leaked: 0, unverified: 0 };
  for (const [key, seenBy] of stats.seen) {
    const o = owner.get(key);
    for (const [tenantId, requestId] of seenBy) {
      f.rowsChecked++;
      if (o === undefined) {
        f.unverified++;
        continue;
      }
      const foreign = o.startsWith("user:") ? !o.toLowerCase().endsWith(`@${slugOf.get(tenantId)}.test`) : o !== tenantId;
      if (foreign) {
        f.leaked++;
        violate("leak", { row: key, owner: o, seenBy: slugOf.get(tenantId) ?? tenantId, requestId });
      }
    }
  }
  return f;
}

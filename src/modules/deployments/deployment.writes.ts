import { Prisma, type Deployment } from "../../generated/prisma/client.ts";
import type { DeploymentStatus } from "../../generated/prisma/enums.ts";
import { auditInsertSql } from "../../policy/audit-sql.ts";
import type { AuditRow } from "../../policy/audit.ts";

/**
 * The statements of the deployment mutations (docs/live-updates.md, "The
 * cost of a write"): each change is ONE statement on the request's
 * connection, its checks, its row and its audit entry together, where
 * Prisma sent three or four (each through its query compiler, each a round
 * trip while the tier-pool connection is held):
 *
 *  - createDeployment: the project check, the INSERT and the audit entry;
 *    a project id unknown to the tenant (or another tenant's) matches no
 *    project row, so nothing is inserted, audited or returned (NOT_FOUND).
 *  - updateDeploymentStatus: the UPDATE and the audit entry; the row as the
 *    UPDATE left it (after the BEFORE trigger's queued/ready times), which
 *    is what the re-read returned.
 *
 * Raw SQL bypasses the Prisma tenant scope (wall 1): every statement filters
 * tenant_id itself, and RLS (wall 2) holds as for every statement of the
 * request. The row comes back with every field of the Prisma model, named as
 * it names them, so the payload is the Deployment Prisma returned.
 */

/** Every column of a deployment (alias-free: RETURNING), named as the Prisma model's fields. */
const RETURNED = Prisma.raw(`tenant_id AS "tenantId", id, project_id AS "projectId", status::text AS status, url,
  commit_sha AS "commitSha", branch, created_by_id AS "createdById", queued_at AS "queuedAt", ready_at AS "readyAt",
  created_at AS "createdAt", updated_at AS "updatedAt"`);

export interface NewDeployment {
  tenantId: string;
  /** Made by the caller: the audit entry's target and the live event name it. */
  id: string;
  projectId: string;
  commitSha: string | null | undefined;
  branch: string | null | undefined;
  createdById: string | null;
}

/**
 * createDeployment's statement. `at` is the app's time written as
 * created_at and updated_at (as Prisma did: its client-side defaults).
 */
export function createDeploymentSql(d: NewDeployment, audit: { row: AuditRow; id: string }, at: Date): Prisma.Sql {
  return Prisma.sql`WITH p AS (
    SELECT id FROM projects WHERE tenant_id = ${d.tenantId}::uuid AND id = ${d.projectId}::uuid
  ), d AS (
    INSERT INTO deployments (tenant_id, id, project_id, commit_sha, branch, created_by_id, created_at, updated_at)
    SELECT ${d.tenantId}::uuid, ${d.id}::uuid, p.id, ${d.commitSha ?? null}, ${d.branch ?? null}, ${d.createdById}::uuid,
           ${at}::timestamptz, ${at}::timestamptz
    FROM p
    RETURNING ${RETURNED}
  ), a AS (
    ${auditInsertSql(audit.row, audit.id, at, Prisma.raw("d"))}
  )
  SELECT * FROM d`;
}

export interface StatusChange {
  tenantId: string;
  id: string;
  status: DeploymentStatus;
  /** undefined: url unchanged. */
  url?: string | null;
}

/** updateDeploymentStatus's statement; `at` is the app's time written as updated_at (Prisma's @updatedAt). */
export function updateDeploymentStatusSql(c: StatusChange, audit: { row: AuditRow; id: string }, at: Date): Prisma.Sql {
  const url = c.url === undefined ? Prisma.empty : Prisma.sql`, url = ${c.url}`;
  return Prisma.sql`WITH d AS (
    UPDATE deployments SET status = ${c.status}::"DeploymentStatus", updated_at = ${at}::timestamptz${url}
    WHERE tenant_id = ${c.tenantId}::uuid AND id = ${c.id}::uuid
    RETURNING ${RETURNED}
  ), a AS (
    ${auditInsertSql(audit.row, audit.id, at, Prisma.raw("d"))}
  )
  SELECT * FROM d`;
}

/** The statement's row (none: nothing matched). */
export type DeploymentRow = Deployment;

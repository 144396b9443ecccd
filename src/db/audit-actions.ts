/**
 * Every audit action the server writes (tenant audit log and platform audit
 * log), in one table: @audit directives, writeAudit and crossTenant() take
 * these only.
 */
export const AUDIT_ACTIONS = [
  "project.create",
  "project.update",
  "project.delete",
  "workflow.create",
  "workflow.update",
  "workflow.delete",
  "deployment.create",
  "deployment.updateStatus",
  "apiKey.create",
  "apiKey.rotate",
  "apiKey.revoke",
  "member.invite",
  "member.updateRole",
  "member.remove",
  "tenant.provision",
  "tenant.suspend",
  "tenant.reactivate",
  "tenant.changePlan",
  "tenant.setLimits",
  "tenant.scheduleDeletion",
  "tenant.purge",
  "tenant.move.start",
  "tenant.move",
  "tenant.export",
  "tenant.clearCache",
  "tenant.setFeatures",
  "tenant.setDomain",
  "tenant.setIdentityProvider",
  "tenant.seed",
  // Reads of the Platform type's fields (`platform.<field>`, src/modules/platform/platform.schema.ts).
  "platform.tenants",
  "platform.tenantUsage",
  "platform.totals",
  "platform.auditLog",
] as const;

export type AuditAction = (typeof AUDIT_ACTIONS)[number];

const KNOWN: ReadonlySet<string> = new Set(AUDIT_ACTIONS);
export const isAuditAction = (action: string): action is AuditAction => KNOWN.has(action);

-- auditLog(filter: { actorId }) walks this index instead of the whole tenant log.
CREATE INDEX "audit_log_tenant_id_actor_id_created_at_id_idx" ON "audit_log"("tenant_id", "actor_id", "created_at" DESC, "id" DESC);

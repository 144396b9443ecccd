-- Idempotency keys (docs/idempotency.md): a mutation sent with an
-- `Idempotency-Key` header stores its answer here, in the same transaction as
-- its change, so a retry of the same request (a lost acknowledgement) gets the
-- stored answer instead of running again. Scoped by tenant (RLS, like every
-- tenant table) and by caller (a user or an API key): nobody else can replay
-- or even probe a key.
CREATE TABLE "idempotency_keys" (
  "tenant_id" UUID NOT NULL,
  -- "user:<uuid>" or "key:<uuid>": whose key it is.
  "caller" TEXT NOT NULL,
  "key" TEXT NOT NULL,
  -- SHA-256 (hex) of the operation: document, operation name, variables.
  "request_hash" TEXT NOT NULL,
  -- The serialized answer ({data, errors}), encrypted (AES-256-GCM: it may
  -- hold an API key's secret); NULL only inside the transaction that claimed the key.
  "response" BYTEA,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "expires_at" TIMESTAMPTZ(3) NOT NULL,
  CONSTRAINT "idempotency_keys_pkey" PRIMARY KEY ("tenant_id", "caller", "key")
);
CREATE INDEX "idempotency_keys_tenant_id_expires_at_idx" ON "idempotency_keys"("tenant_id", "expires_at");
ALTER TABLE "idempotency_keys" ADD CONSTRAINT "idempotency_keys_tenant_id_fkey"
  FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;

GRANT SELECT, INSERT, UPDATE, DELETE ON "idempotency_keys" TO tenantgraph_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON "idempotency_keys" TO tenantgraph_platform;
ALTER TABLE "idempotency_keys" ENABLE ROW LEVEL SECURITY;
ALTER TABLE "idempotency_keys" FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON "idempotency_keys" TO tenantgraph_app
  USING (tenant_id = app_current_tenant())
  WITH CHECK (tenant_id = app_current_tenant());
CREATE POLICY platform_access ON "idempotency_keys" TO tenantgraph_platform USING (true) WITH CHECK (true);

-- The response cache's generation triggers, as on every tenant table
-- (migration 20261202001000_response_cache): a keyed mutation changes its
-- tenant's data in the same transaction anyway.
SELECT app_track_cache('idempotency_keys'::regclass, 'tenant_id');

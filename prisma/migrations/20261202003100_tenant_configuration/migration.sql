-- Per-tenant configuration (SPEC section 10, issue 18; docs/tenant-config.md).
--
--   tenants.feature_overrides  the tenant's feature set when a platform admin
--                              set one (setTenantFeatures); NULL = its plan's
--   tenants.domain             its custom domain (setTenantDomain), unique
--   tenants.idp_*              its own identity provider (setTenantIdentityProvider):
--                              issuer (unique: one issuer names one tenant),
--                              JWKS URL and optional audience
--   tenants.storage_bytes      the bytes of its rows, measured in the background
--                              (src/modules/storage/), with the time measured
--   deployments.queued_at/ready_at
--                              when a deployment entered QUEUED and READY
--                              (set by a trigger on every path), for
--                              deploymentStats' QUEUED -> READY times
ALTER TABLE "tenants"
  ADD COLUMN "feature_overrides" JSONB,
  ADD COLUMN "domain" TEXT,
  ADD COLUMN "idp_issuer" TEXT,
  ADD COLUMN "idp_jwks_url" TEXT,
  ADD COLUMN "idp_audience" TEXT,
  ADD COLUMN "storage_bytes" DOUBLE PRECISION NOT NULL DEFAULT 0,
  ADD COLUMN "storage_measured_at" TIMESTAMPTZ(3),
  ADD CONSTRAINT "tenants_feature_overrides_array" CHECK ("feature_overrides" IS NULL OR jsonb_typeof("feature_overrides") = 'array'),
  ADD CONSTRAINT "tenants_domain_lower" CHECK ("domain" = lower("domain")),
  ADD CONSTRAINT "tenants_idp_complete" CHECK (("idp_issuer" IS NULL) = ("idp_jwks_url" IS NULL));
CREATE UNIQUE INDEX "tenants_domain_key" ON "tenants"("domain");
CREATE UNIQUE INDEX "tenants_idp_issuer_key" ON "tenants"("idp_issuer");

-- An OWNER sets the identity provider of the current tenant through the app
-- role: it may change those three columns, of its own tenant's row only.
GRANT UPDATE ("idp_issuer", "idp_jwks_url", "idp_audience") ON "tenants" TO tenantgraph_app;
CREATE POLICY own_tenant_idp ON "tenants" FOR UPDATE TO tenantgraph_app
  USING (id = app_current_tenant()) WITH CHECK (id = app_current_tenant());

ALTER TABLE "deployments"
  ADD COLUMN "queued_at" TIMESTAMPTZ(3),
  ADD COLUMN "ready_at" TIMESTAMPTZ(3);

-- QUEUED at insert: queued_at is the creation time; a change of status to
-- QUEUED (a retry) starts again; a change to READY records ready_at. Values
-- a statement sets explicitly are kept (imports, seeds, tests).
CREATE FUNCTION app_deployment_status_times() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
  BEGIN
    IF TG_OP = 'INSERT' THEN
      IF NEW.status = 'QUEUED' AND NEW.queued_at IS NULL THEN
        NEW.queued_at := NEW.created_at;
      END IF;
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
      IF NEW.status = 'QUEUED' AND NEW.queued_at IS NOT DISTINCT FROM OLD.queued_at THEN
        NEW.queued_at := statement_timestamp();
        NEW.ready_at := NULL;
      ELSIF NEW.status = 'READY' AND NEW.ready_at IS NOT DISTINCT FROM OLD.ready_at THEN
        NEW.ready_at := statement_timestamp();
      END IF;
    END IF;
    RETURN NEW;
  END
  $$;
CREATE TRIGGER deployments_status_times BEFORE INSERT OR UPDATE ON "deployments"
  FOR EACH ROW EXECUTE FUNCTION app_deployment_status_times();

-- The authorization facts (docs/revocation.md) now also report the tenant's
-- feature overrides, custom domain, identity provider and measured storage,
-- so a plan, feature, domain or identity-provider change holds on the next
-- request on every replica whatever the cache says. Same signature, same
-- SECURITY INVOKER: it sees the current tenant's row only.
CREATE OR REPLACE FUNCTION app_request_facts(p_key_id uuid, p_key_hash text) RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$
    SELECT jsonb_build_object(
      'tenant', (
        SELECT jsonb_build_object(
          'status', t.status,
          'plan', t.plan,
          'overrides', COALESCE(
            (SELECT jsonb_object_agg(o.resource, o."limit") FROM "tenant_limit_overrides" o
              WHERE o.tenant_id = t.id),
            '{}'::jsonb),
          'features', t.feature_overrides,
          'domain', t.domain,
          'idp', CASE WHEN t.idp_issuer IS NULL THEN NULL
                      ELSE jsonb_build_object('issuer', t.idp_issuer, 'jwksUrl', t.idp_jwks_url, 'audience', t.idp_audience) END,
          'storageBytes', t.storage_bytes)
        FROM "tenants" t WHERE t.id = app_current_tenant()),
      'member', (
        SELECT jsonb_build_object('id', m.id, 'role', m.role) FROM "memberships" m
        WHERE m.tenant_id = app_current_tenant() AND m.user_id = app_current_user()),
      'admin', (SELECT u.is_platform_admin FROM "users" u WHERE u.id = app_current_user()),
      'key', (
        SELECT k.role FROM "api_keys" k
        WHERE k.tenant_id = app_current_tenant() AND k.id = p_key_id
          AND k.revoked_at IS NULL
          AND (k.expires_at IS NULL OR k.expires_at > statement_timestamp())
          AND (k.secret_hash = p_key_hash
               OR (k.previous_secret_hash = p_key_hash AND k.previous_expires_at > statement_timestamp())))
    )
  $$;

-- The response cache's generation (20261202001000_response_cache) is bumped
-- by any change of a tenant's row; the background storage measurement
-- (storage_bytes, storage_measured_at, rewritten for every tenant every few
-- minutes) is not a change any cached answer shows (`usage` and the
-- platform's statistics are never cached), so it bumps nothing: the update
-- trigger of `tenants` compares the rows without those two columns.
CREATE FUNCTION app_cache_changed_tenants() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
  DECLARE
    ids uuid[];
    done text := coalesce(current_setting('app.cache_bumped', true), '');
  BEGIN
    ids := ARRAY(
      SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
      WHERE to_jsonb(n) - 'storage_bytes' - 'storage_measured_at' IS DISTINCT FROM to_jsonb(o) - 'storage_bytes' - 'storage_measured_at'
        AND position(n.id::text IN done) = 0);
    IF cardinality(ids) > 0 THEN
      PERFORM app_bump_cache_generations(ids);
      PERFORM set_config('app.cache_bumped', done || array_to_string(ids, ',') || ',', true);
    END IF;
    RETURN NULL;
  END
  $$;
DROP TRIGGER cache_generation_update ON "tenants";
CREATE TRIGGER cache_generation_update AFTER UPDATE ON "tenants" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_cache_changed_tenants();

-- Wall 2: PostgreSQL row-level security.
--
-- Three roles touch the data:
--   * the migrator (whoever DATABASE_URL logs in as) owns the tables;
--   * tenantgraph_app: the server's tenant-scoped queries. Not an owner, not a
--     superuser, no BYPASSRLS: every tenant table shows it only the rows of
--     the tenant named by the transaction-local setting app.tenant_id;
--   * tenantgraph_platform: the explicit, audited cross-tenant path for
--     platform operators (and for resolving credentials before a tenant is
--     known). Its policies are written out below, not obtained by bypassing.
-- Both are NOLOGIN groups: the server reaches them with SET ROLE (the migrator
-- is made a member), or, on a managed database, a login user is granted the
-- group and named in APP_DATABASE_URL / PLATFORM_DATABASE_URL (docs/database.md).

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantgraph_app') THEN
    CREATE ROLE tenantgraph_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantgraph_platform') THEN
    CREATE ROLE tenantgraph_platform NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
END
$$;

-- Let the migrator SET ROLE to both (a no-op for a superuser).
DO $$
BEGIN
  EXECUTE format('GRANT tenantgraph_app TO %I', current_user);
  EXECUTE format('GRANT tenantgraph_platform TO %I', current_user);
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'could not grant app roles to %: %', current_user, SQLERRM;
END
$$;

DO $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO tenantgraph_app, tenantgraph_platform', current_schema());
END
$$;

-- The current tenant, from the transaction-local setting. NULL when unset, so
-- a forgotten setting matches no row rather than failing open.
CREATE FUNCTION app_current_tenant() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;
GRANT EXECUTE ON FUNCTION app_current_tenant() TO tenantgraph_app, tenantgraph_platform;

-- Global tables. The app reads tenants (to resolve slugs) and users; it may
-- create users (invitations) but never change a tenant.
GRANT SELECT ON "tenants" TO tenantgraph_app;
GRANT SELECT, INSERT, UPDATE ON "users" TO tenantgraph_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON "tenants", "users", "platform_audit_log" TO tenantgraph_platform;
REVOKE UPDATE, DELETE ON "platform_audit_log" FROM tenantgraph_platform;

-- Tenant tables.
GRANT SELECT, INSERT, UPDATE, DELETE ON
  "memberships", "projects", "deployments", "workflows", "api_keys", "usage_counters"
  TO tenantgraph_app;
GRANT SELECT ON "tenant_limit_overrides" TO tenantgraph_app;
-- The audit log is append-only for the app.
GRANT SELECT, INSERT ON "audit_log" TO tenantgraph_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON
  "memberships", "projects", "deployments", "workflows", "api_keys", "usage_counters",
  "tenant_limit_overrides"
  TO tenantgraph_platform;
GRANT SELECT, INSERT, DELETE ON "audit_log" TO tenantgraph_platform;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['memberships', 'projects', 'deployments', 'workflows', 'api_keys',
                           'audit_log', 'usage_counters', 'tenant_limit_overrides']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I TO tenantgraph_app
         USING (tenant_id = app_current_tenant())
         WITH CHECK (tenant_id = app_current_tenant())', t);
    EXECUTE format(
      'CREATE POLICY platform_access ON %I TO tenantgraph_platform USING (true) WITH CHECK (true)', t);
  END LOOP;
END
$$;

-- Users are global identities, but through the app role a user row is visible
-- only when it is a member of the current tenant (memberships is itself
-- filtered by tenant) or is the caller (app.user_id). RLS is enabled but not
-- forced here, so the owner-defined lookup function below can see all users.
CREATE FUNCTION app_current_user() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::uuid $$;
GRANT EXECUTE ON FUNCTION app_current_user() TO tenantgraph_app, tenantgraph_platform;

ALTER TABLE "users" ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_members ON "users" FOR SELECT TO tenantgraph_app
  USING (id = app_current_user()
         OR EXISTS (SELECT 1 FROM "memberships" m WHERE m.user_id = "users".id));
CREATE POLICY tenant_members_update ON "users" FOR UPDATE TO tenantgraph_app
  USING (EXISTS (SELECT 1 FROM "memberships" m WHERE m.user_id = "users".id));
CREATE POLICY create_users ON "users" FOR INSERT TO tenantgraph_app WITH CHECK (true);
CREATE POLICY platform_access ON "users" TO tenantgraph_platform USING (true) WITH CHECK (true);

-- Invitations reuse an existing identity by e-mail even when it belongs only
-- to other tenants. This narrow definer function answers with the id alone.
CREATE FUNCTION app_user_id_by_email(p_email text) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path FROM CURRENT
  AS $$ SELECT id FROM "users" WHERE email = lower(p_email) $$;
REVOKE ALL ON FUNCTION app_user_id_by_email(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_user_id_by_email(text) TO tenantgraph_app;

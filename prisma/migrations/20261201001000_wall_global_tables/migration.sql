-- Wall 2 on the global tables: the database alone keeps a tenant session
-- (tenantgraph_app with app.tenant_id set) inside its tenant, for `tenants`,
-- `users` and the audit log as for every tenant table.
--
--   * tenants: row-level security; the app role sees its own tenant's row only.
--   * users: the app role reads (members of its tenant and the caller, as
--     before) but never writes: no UPDATE (auth_subject, email,
--     is_platform_admin, name are global identity), no INSERT (so no platform
--     admin can be made). Invitations create identities through
--     app_add_member() below, which makes plain users only.
--   * audit_log: an entry written by the app role carries the session's tenant
--     and actor (app.user_id or app.api_key_id) and never cross_tenant; cross
--     tenant entries are the platform role's.
--   * app_user_id_by_email(), which answered "which user has this e-mail" for
--     any tenant, is dropped: app_add_member() answers nothing about a foreign
--     identity without making it a member of the current tenant.

-- tenants -------------------------------------------------------------------
ALTER TABLE "tenants" ENABLE ROW LEVEL SECURITY;
ALTER TABLE "tenants" FORCE ROW LEVEL SECURITY;
CREATE POLICY own_tenant ON "tenants" FOR SELECT TO tenantgraph_app
  USING (id = app_current_tenant());
CREATE POLICY platform_access ON "tenants" TO tenantgraph_platform USING (true) WITH CHECK (true);

-- users ---------------------------------------------------------------------
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON "users" FROM tenantgraph_app;
DROP POLICY tenant_members_update ON "users";
DROP POLICY create_users ON "users";

-- audit_log -----------------------------------------------------------------
-- The API key a session acts as (NULL when unset), beside app_current_user().
CREATE FUNCTION app_current_api_key() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT NULLIF(current_setting('app.api_key_id', true), '')::uuid $$;
GRANT EXECUTE ON FUNCTION app_current_api_key() TO tenantgraph_app, tenantgraph_platform;

-- The actor columns a session may write: its own user or its own API key, as
-- the Relay global id the server stores (base64 of "<Type>:<uuid>",
-- src/schema/ids.ts). A session with neither may write no entry.
CREATE FUNCTION app_audit_actor_is_session(p_type "ActorType", p_id text) RETURNS boolean
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT CASE p_type
      WHEN 'USER' THEN p_id = encode(convert_to('User:' || app_current_user()::text, 'UTF8'), 'base64')
      WHEN 'API_KEY' THEN p_id = encode(convert_to('ApiKey:' || app_current_api_key()::text, 'UTF8'), 'base64')
      ELSE false
    END IS TRUE
  $$;
GRANT EXECUTE ON FUNCTION app_audit_actor_is_session("ActorType", text) TO tenantgraph_app;

DROP POLICY tenant_isolation ON "audit_log";
CREATE POLICY tenant_read ON "audit_log" FOR SELECT TO tenantgraph_app
  USING (tenant_id = app_current_tenant());
CREATE POLICY tenant_append ON "audit_log" FOR INSERT TO tenantgraph_app
  WITH CHECK (tenant_id = app_current_tenant()
              AND NOT cross_tenant
              AND app_audit_actor_is_session(actor_type, actor_id));

-- invitations ---------------------------------------------------------------
DROP FUNCTION app_user_id_by_email(text);

-- Adds the identity with this e-mail to the CURRENT tenant (app.tenant_id),
-- creating it when nobody has it yet (a plain user: never a platform admin;
-- its subject is the e-mail until the identity provider's first sign-in).
-- Answers the new membership's id; already_member when the identity is a
-- member already (the existing membership's id, visible to the tenant
-- anyway); no row when the e-mail cannot be used (another identity holds it
-- as its subject). It never tells whether an e-mail exists elsewhere without
-- making it a member here. The search_path is pinned (temporary objects last)
-- so a caller's temporary table cannot stand in for a table here.
DO $$
BEGIN
  EXECUTE format($fn$
    CREATE FUNCTION app_add_member(p_email text, p_name text, p_role "Role")
      RETURNS TABLE (membership_id uuid, already_member boolean)
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      DECLARE
        v_tenant uuid := app_current_tenant();
        v_email text := lower(btrim(p_email));
        v_user uuid;
        v_membership uuid;
      BEGIN
        IF v_tenant IS NULL THEN
          RAISE EXCEPTION 'app_add_member: app.tenant_id is not set' USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF v_email = '' OR p_role IS NULL THEN
          RAISE EXCEPTION 'app_add_member: e-mail and role are required' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO users (email, name, auth_subject) VALUES (v_email, p_name, v_email) ON CONFLICT DO NOTHING;
        SELECT u.id INTO v_user FROM users u WHERE u.email = v_email;
        IF v_user IS NULL THEN
          RETURN;
        END IF;
        INSERT INTO memberships (tenant_id, user_id, role) VALUES (v_tenant, v_user, p_role)
          ON CONFLICT (tenant_id, user_id) DO NOTHING
          RETURNING id INTO v_membership;
        IF v_membership IS NOT NULL THEN
          RETURN QUERY SELECT v_membership, false;
        ELSE
          RETURN QUERY SELECT m.id, true FROM memberships m WHERE m.tenant_id = v_tenant AND m.user_id = v_user;
        END IF;
      END
      $body$
  $fn$, current_schema());
END
$$;
REVOKE ALL ON FUNCTION app_add_member(text, text, "Role") FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_add_member(text, text, "Role") TO tenantgraph_app;

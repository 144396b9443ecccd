-- An invitation by a SCHEMA/DATABASE tenant (docs/placement.md, "Invitations
-- of known people"): the one global identity app_add_member will use is
-- copied into the placement IN the invitation's transaction (with the seat
-- check, app_add_member and the audit entry), so a refused invitation rolls
-- the copy back. The server reads the identity in the main database and
-- passes it here; tenantgraph_app cannot write `users` itself.
--
-- Made in placements only (a schema tenant_<32 hex>, a database
-- tg_tenant_<32 hex>): the main database, where the directory's identities
-- live, never gets it, so the app role there still cannot make an identity.
-- It writes a plain user (never a platform admin), only when no identity of
-- the placement has that id, e-mail or subject (ON CONFLICT DO NOTHING), and
-- only with app.tenant_id set to the placement's tenant.
DO $$
BEGIN
  IF current_schema() !~ '^tenant_[0-9a-f]{32}$' AND current_database() !~ '^tg_tenant_[0-9a-f]{32}$' THEN
    RETURN;
  END IF;
  EXECUTE format($fn$
    CREATE FUNCTION app_place_identity(p_id uuid, p_email text, p_name text, p_subject text, p_created_at timestamptz)
      RETURNS void
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      DECLARE
        v_tenant uuid := app_current_tenant();
      BEGIN
        IF v_tenant IS NULL OR NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = v_tenant) THEN
          RAISE EXCEPTION 'app_place_identity: app.tenant_id is not this placement''s tenant' USING ERRCODE = 'insufficient_privilege';
        END IF;
        INSERT INTO users (id, email, name, auth_subject, is_platform_admin, created_at)
          VALUES (p_id, p_email, p_name, p_subject, false, p_created_at)
          ON CONFLICT DO NOTHING;
      END
      $body$
  $fn$, current_schema());
  REVOKE ALL ON FUNCTION app_place_identity(uuid, text, text, text, timestamptz) FROM PUBLIC;
  GRANT EXECUTE ON FUNCTION app_place_identity(uuid, text, text, text, timestamptz) TO tenantgraph_app;
END
$$;

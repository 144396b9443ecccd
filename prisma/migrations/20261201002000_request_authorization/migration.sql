-- The authorization facts of a request, read by PostgreSQL inside the
-- request's own transaction (docs/revocation.md).
--
-- The directory cache (Redis) only proposes who the caller is; every request
-- that reaches execution runs this function in the message that opens its
-- transaction (after the set_config of app.tenant_id and app.user_id), and
-- the server replaces what the cache said with what this returns. So a
-- membership removal, role change, key revocation or rotation, suspension,
-- plan or limit change or platform-admin change holds on the very next
-- request, whatever the cache holds.
--
-- SECURITY INVOKER on purpose: it runs as tenantgraph_app under row-level
-- security, so it can only ever see the current tenant's rows and the
-- caller's own user row: exactly the facts it reports.
--
--   tenant: status, plan and limit overrides of app.tenant_id (null: gone)
--   member: id and role of app.user_id's membership there (null: none)
--   admin:  users.is_platform_admin of app.user_id (null: no such user)
--   key:    the role of API key p_key_id when p_key_hash is its current
--           secret, or its previous one still in its grace period, and the
--           key is neither revoked nor expired (null otherwise)
CREATE FUNCTION app_request_facts(p_key_id uuid, p_key_hash text) RETURNS jsonb
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
            '{}'::jsonb))
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
REVOKE ALL ON FUNCTION app_request_facts(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_request_facts(uuid, text) TO tenantgraph_app;

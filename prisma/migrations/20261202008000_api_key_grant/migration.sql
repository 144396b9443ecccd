-- One definition of an API key's validity (docs/revocation.md,
-- docs/live-updates.md). It was written in app_request_facts (requests) and
-- again, without the secret, in the live hub's stream re-check: a stream
-- opened with a secret rotated away (or past its grace) kept its events.
--
-- app_api_key_grant: the role of API key p_key_id of tenant p_tenant_id and
-- the time it stops holding by itself (its expiry, or the end of the grace
-- when p_key_hash is the previous secret; null: never), when p_key_hash is
-- its current secret or its previous one still in its grace period and the
-- key is neither revoked nor expired, judged at p_at; null otherwise.
--
-- Asked by app_request_facts for a request (at statement_timestamp()) and by
-- the live hub for every open stream, with the secret hash that opened it,
-- in its event reads and access re-checks (at the later of
-- statement_timestamp() and the hub's clock). SECURITY INVOKER: as
-- tenantgraph_app it sees the current tenant's keys only (row-level security).
CREATE FUNCTION app_api_key_grant(p_tenant_id uuid, p_key_id uuid, p_key_hash text, p_at timestamptz) RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$
    SELECT jsonb_build_object(
      'role', k.role,
      'until', CASE WHEN k.secret_hash = p_key_hash THEN k.expires_at ELSE LEAST(k.expires_at, k.previous_expires_at) END)
    FROM "api_keys" k
    WHERE k.tenant_id = p_tenant_id AND k.id = p_key_id
      AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > p_at)
      AND (k.secret_hash = p_key_hash
           OR (k.previous_secret_hash = p_key_hash AND k.previous_expires_at > p_at))
  $$;
REVOKE ALL ON FUNCTION app_api_key_grant(uuid, uuid, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_api_key_grant(uuid, uuid, text, timestamptz) TO tenantgraph_app, tenantgraph_platform;

-- app_request_facts as in 20261202003100_tenant_configuration, its `key`
-- now asked of app_api_key_grant (same signature, same answer).
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
      'key', app_api_key_grant(app_current_tenant(), p_key_id, p_key_hash, statement_timestamp()) -> 'role'
    )
  $$;

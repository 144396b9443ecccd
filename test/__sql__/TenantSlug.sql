-- TenantSlug (test/operations/tenant-slug.graphql): 2 statements
app: BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT set_config('app.tenant_id', '<uuid>', true), set_config('app.user_id', '<uuid>', true), set_config('app.api_key_id', '', true), set_config('statement_timeout', '30000', true), set_config('idle_in_transaction_session_timeout', '60000', true); SELECT app_request_facts(NULL, NULL) AS facts, (SELECT placement::text || coalesce(':' || placement_server, '') || coalesce(':' || placement_name, '') FROM tenants WHERE id = '<uuid>'::uuid) AS route
app: COMMIT

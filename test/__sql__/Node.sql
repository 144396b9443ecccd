-- Node (test/operations/nodes.graphql): 3 statements
app: BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT set_config('app.tenant_id', '<uuid>', true), set_config('app.user_id', '<uuid>', true), set_config('app.api_key_id', '', true), set_config('statement_timeout', '30000', true), set_config('idle_in_transaction_session_timeout', '60000', true); SELECT app_request_facts(NULL, NULL) AS facts
app: SELECT "public"."projects"."tenant_id", "public"."projects"."id", "public"."projects"."name", "public"."projects"."slug", "public"."projects"."description", "public"."projects"."created_at", "public"."projects"."updated_at" FROM "public"."projects" WHERE (("public"."projects"."tenant_id" = $1 AND "public"."projects"."id" = $2) AND "public"."projects"."tenant_id" = $3) LIMIT $4 OFFSET $5
app: COMMIT

-- Initial schema. Tenant-owned tables have composite keys (tenant_id, id) and
-- foreign keys that include tenant_id, so a row can only reference rows of its
-- own tenant.

CREATE TYPE "Role" AS ENUM ('VIEWER', 'DEVELOPER', 'ADMIN', 'OWNER');
CREATE TYPE "Plan" AS ENUM ('FREE', 'PRO', 'ENTERPRISE');
CREATE TYPE "TenantStatus" AS ENUM ('ACTIVE', 'SUSPENDED', 'PENDING_DELETION');
CREATE TYPE "DeploymentStatus" AS ENUM ('QUEUED', 'BUILDING', 'READY', 'ERROR', 'CANCELED');
CREATE TYPE "WorkflowStatus" AS ENUM ('ACTIVE', 'PAUSED', 'ARCHIVED');
CREATE TYPE "QuotaResource" AS ENUM ('API_REQUESTS_PER_MINUTE', 'DEPLOYMENTS_PER_HOUR', 'WORKFLOWS_PER_HOUR', 'SEATS', 'PROJECTS');
CREATE TYPE "ActorType" AS ENUM ('USER', 'API_KEY', 'SYSTEM');

CREATE TABLE "tenants" (
  "id" UUID NOT NULL DEFAULT gen_random_uuid(),
  "slug" TEXT NOT NULL,
  "name" TEXT NOT NULL,
  "plan" "Plan" NOT NULL DEFAULT 'FREE',
  "status" "TenantStatus" NOT NULL DEFAULT 'ACTIVE',
  "region" TEXT NOT NULL DEFAULT 'eu-west-1',
  "suspended_reason" TEXT,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "tenants_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "tenants_slug_key" ON "tenants"("slug");
CREATE INDEX "tenants_created_at_id_idx" ON "tenants"("created_at" DESC, "id" DESC);

CREATE TABLE "users" (
  "id" UUID NOT NULL DEFAULT gen_random_uuid(),
  "email" TEXT NOT NULL,
  "name" TEXT,
  "auth_subject" TEXT NOT NULL,
  "is_platform_admin" BOOLEAN NOT NULL DEFAULT false,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "users_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "users_email_key" ON "users"("email");
CREATE UNIQUE INDEX "users_auth_subject_key" ON "users"("auth_subject");

CREATE TABLE "memberships" (
  "tenant_id" UUID NOT NULL,
  "id" UUID NOT NULL DEFAULT gen_random_uuid(),
  "user_id" UUID NOT NULL,
  "role" "Role" NOT NULL,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "memberships_pkey" PRIMARY KEY ("tenant_id", "id")
);
CREATE UNIQUE INDEX "memberships_tenant_id_user_id_key" ON "memberships"("tenant_id", "user_id");
CREATE INDEX "memberships_tenant_id_created_at_id_idx" ON "memberships"("tenant_id", "created_at" DESC, "id" DESC);
CREATE INDEX "memberships_user_id_idx" ON "memberships"("user_id");

CREATE TABLE "projects" (
  "tenant_id" UUID NOT NULL,
  "id" UUID NOT NULL DEFAULT gen_random_uuid(),
  "name" TEXT NOT NULL,
  "slug" TEXT NOT NULL,
  "description" TEXT,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "projects_pkey" PRIMARY KEY ("tenant_id", "id")
);
CREATE UNIQUE INDEX "projects_tenant_id_slug_key" ON "projects"("tenant_id", "slug");
CREATE INDEX "projects_tenant_id_created_at_id_idx" ON "projects"("tenant_id", "created_at" DESC, "id" DESC);
CREATE INDEX "projects_tenant_id_updated_at_id_idx" ON "projects"("tenant_id", "updated_at" DESC, "id" DESC);
CREATE INDEX "projects_tenant_id_name_id_idx" ON "projects"("tenant_id", "name", "id");

CREATE TABLE "deployments" (
  "tenant_id" UUID NOT NULL,
  "id" UUID NOT NULL DEFAULT gen_random_uuid(),
  "project_id" UUID NOT NULL,
  "status" "DeploymentStatus" NOT NULL DEFAULT 'QUEUED',
  "url" TEXT,
  "commit_sha" TEXT,
  "branch" TEXT,
  "created_by_id" UUID,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "deployments_pkey" PRIMARY KEY ("tenant_id", "id")
);
CREATE INDEX "deployments_tenant_id_created_at_id_idx" ON "deployments"("tenant_id", "created_at" DESC, "id" DESC);
CREATE INDEX "deployments_tenant_id_updated_at_id_idx" ON "deployments"("tenant_id", "updated_at" DESC, "id" DESC);
CREATE INDEX "deployments_tenant_id_project_id_created_at_id_idx" ON "deployments"("tenant_id", "project_id", "created_at" DESC, "id" DESC);
CREATE INDEX "deployments_tenant_id_status_created_at_id_idx" ON "deployments"("tenant_id", "status", "created_at" DESC, "id" DESC);

CREATE TABLE "workflows" (
  "tenant_id" UUID NOT NULL,
  "id" UUID NOT NULL DEFAULT gen_random_uuid(),
  "project_id" UUID,
  "name" TEXT NOT NULL,
  "status" "WorkflowStatus" NOT NULL DEFAULT 'ACTIVE',
  "config" JSONB,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "workflows_pkey" PRIMARY KEY ("tenant_id", "id")
);
CREATE INDEX "workflows_tenant_id_created_at_id_idx" ON "workflows"("tenant_id", "created_at" DESC, "id" DESC);
CREATE INDEX "workflows_tenant_id_project_id_created_at_id_idx" ON "workflows"("tenant_id", "project_id", "created_at" DESC, "id" DESC);
CREATE INDEX "workflows_tenant_id_status_created_at_id_idx" ON "workflows"("tenant_id", "status", "created_at" DESC, "id" DESC);

CREATE TABLE "api_keys" (
  "tenant_id" UUID NOT NULL,
  "id" UUID NOT NULL DEFAULT gen_random_uuid(),
  "name" TEXT NOT NULL,
  "role" "Role" NOT NULL,
  "prefix" TEXT NOT NULL,
  "secret_hash" TEXT NOT NULL,
  "previous_secret_hash" TEXT,
  "previous_expires_at" TIMESTAMPTZ(3),
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "last_used_at" TIMESTAMPTZ(3),
  "expires_at" TIMESTAMPTZ(3),
  "revoked_at" TIMESTAMPTZ(3),
  CONSTRAINT "api_keys_pkey" PRIMARY KEY ("tenant_id", "id")
);
CREATE UNIQUE INDEX "api_keys_secret_hash_key" ON "api_keys"("secret_hash");
CREATE UNIQUE INDEX "api_keys_previous_secret_hash_key" ON "api_keys"("previous_secret_hash");
CREATE INDEX "api_keys_tenant_id_created_at_id_idx" ON "api_keys"("tenant_id", "created_at" DESC, "id" DESC);

CREATE TABLE "audit_log" (
  "tenant_id" UUID NOT NULL,
  "id" UUID NOT NULL DEFAULT gen_random_uuid(),
  "action" TEXT NOT NULL,
  "actor_type" "ActorType" NOT NULL,
  "actor_id" TEXT,
  "actor_label" TEXT,
  "target_type" TEXT,
  "target_id" TEXT,
  "cross_tenant" BOOLEAN NOT NULL DEFAULT false,
  "metadata" JSONB,
  "request_id" TEXT,
  "ip" TEXT,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "audit_log_pkey" PRIMARY KEY ("tenant_id", "id")
);
CREATE INDEX "audit_log_tenant_id_created_at_id_idx" ON "audit_log"("tenant_id", "created_at" DESC, "id" DESC);
CREATE INDEX "audit_log_tenant_id_action_created_at_id_idx" ON "audit_log"("tenant_id", "action", "created_at" DESC, "id" DESC);

CREATE TABLE "platform_audit_log" (
  "id" UUID NOT NULL DEFAULT gen_random_uuid(),
  "action" TEXT NOT NULL,
  "actor_type" "ActorType" NOT NULL,
  "actor_id" TEXT,
  "actor_label" TEXT,
  "tenant_ids" UUID[],
  "metadata" JSONB,
  "request_id" TEXT,
  "ip" TEXT,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "platform_audit_log_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "platform_audit_log_created_at_id_idx" ON "platform_audit_log"("created_at" DESC, "id" DESC);

CREATE TABLE "usage_counters" (
  "tenant_id" UUID NOT NULL,
  "resource" "QuotaResource" NOT NULL,
  "window_start" TIMESTAMPTZ(3) NOT NULL,
  "count" INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT "usage_counters_pkey" PRIMARY KEY ("tenant_id", "resource", "window_start")
);

CREATE TABLE "tenant_limit_overrides" (
  "tenant_id" UUID NOT NULL,
  "resource" "QuotaResource" NOT NULL,
  "limit" INTEGER,
  CONSTRAINT "tenant_limit_overrides_pkey" PRIMARY KEY ("tenant_id", "resource")
);

ALTER TABLE "memberships" ADD CONSTRAINT "memberships_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "memberships" ADD CONSTRAINT "memberships_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "projects" ADD CONSTRAINT "projects_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_tenant_id_project_id_fkey" FOREIGN KEY ("tenant_id", "project_id") REFERENCES "projects"("tenant_id", "id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_created_by_id_fkey" FOREIGN KEY ("created_by_id") REFERENCES "users"("id") ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE "workflows" ADD CONSTRAINT "workflows_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "workflows" ADD CONSTRAINT "workflows_tenant_id_project_id_fkey" FOREIGN KEY ("tenant_id", "project_id") REFERENCES "projects"("tenant_id", "id") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "audit_log" ADD CONSTRAINT "audit_log_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "usage_counters" ADD CONSTRAINT "usage_counters_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "tenant_limit_overrides" ADD CONSTRAINT "tenant_limit_overrides_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Per-tenant configuration (SPEC section 10, issue 18): the storage a tenant
-- uses is a quota like the others (FREE 100 MB, PRO 10 GB, ENTERPRISE
-- unlimited; src/tenancy/plans.ts), overridable per tenant.
ALTER TYPE "QuotaResource" ADD VALUE IF NOT EXISTS 'STORAGE_BYTES';

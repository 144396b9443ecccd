-- Live updates (SPEC section 10): concurrent subscription streams per tenant
-- are a quota like the others, overridable per tenant.
ALTER TYPE "QuotaResource" ADD VALUE IF NOT EXISTS 'SUBSCRIPTIONS';

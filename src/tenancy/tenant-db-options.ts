import type { Plan } from "../generated/prisma/enums.ts";
import type { LivePublisher } from "../infra/live-events.ts";
import type { TransactionSettings } from "./transaction-settings.ts";

/** What a TenantDb (tenant-db.ts) is made with. */
export interface TenantDbOptions extends TransactionSettings {
  /**
   * The tenant's plan: its operations run on that plan's tier pool
   * (src/db/clients.ts). Without it, on the client given. A plan that
   * changes during a request (authorize() reads the true one) applies from
   * the next request.
   */
  plan?: Plan;
  /**
   * Wall 1, the Prisma tenant scope. Default on. Only tests turn it off, to
   * show that row-level security (wall 2) isolates tenants on its own
   * (test/helpers/app.ts, TEST_TENANT_WALL=rls; docs/database.md).
   */
  tenantScope?: boolean;
  /** Receives the live changes a transaction registered, once it has committed. */
  publisher?: LivePublisher;
  /**
   * Mutation mode: runs once the COMMIT succeeded, before the live changes
   * and the afterCommit hooks (a placed tenant's directory rows go back to
   * the main database before the caches are invalidated; docs/placement.md).
   */
  onCommitted?: () => Promise<void>;
  /** Mutation mode: false runs each change on the transaction itself, no savepoint (src/tenancy/mutation-changes.ts). */
  savepoints?: boolean;
}

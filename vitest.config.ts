import { defineConfig } from "vitest/config";

// Integration tests share one PostgreSQL server (DATABASE_URL, or an embedded
// one started by the global setup); every test file clones its own database
// from a migrated template, so files run in parallel without interfering.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    pool: "forks",
  },
});

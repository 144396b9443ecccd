import { defineConfig } from "vitest/config";

// Integration tests share one PostgreSQL server (DATABASE_URL, or an embedded
// one started by the global setup); every test file clones its own database
// from a migrated template, so files run in parallel without interfering.
export default defineConfig({
  // Vite would resolve `graphql` to its ESM build for our sources while Node
  // loads the CJS build for Pothos and Yoga: two realms, and graphql refuses
  // types from the other one. Pin everything to the build Node loads.
  resolve: { alias: { graphql: "graphql/index.js" } },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    pool: "forks",
  },
});

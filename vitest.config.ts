import { defineConfig } from "vitest/config";

// Integration tests share one PostgreSQL server (DATABASE_URL, or an embedded
// one started by the global setup); every test file clones its own database
// from a migrated template, so files run in parallel without interfering.
/** Test files that start processes or wait for real timeouts: their own project. */
const SLOW = [
  "test/integration/scripts.test.ts",
  "test/integration/multi-process.test.ts",
  "test/integration/statement-timeout.test.ts",
  "test/integration/export.test.ts",
  "test/integration/revocation.test.ts",
  "test/integration/shutdown.test.ts",
  "test/integration/startup.test.ts",
  "test/integration/redis-outage.test.ts",
  "test/integration/response-cache-faults.test.ts",
];

export default defineConfig({
  // Vite would resolve `graphql` to its ESM build for our sources while Node
  // loads the CJS build for Pothos and Yoga: two realms, and graphql refuses
  // types from the other one. Pin everything to the build Node loads.
  resolve: { alias: { graphql: "graphql/index.js" } },
  test: {
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    pool: "forks",
    // `npm test` runs unit + integration; the slow project (processes
    // started, timeouts waited for, 100,000 rows streamed) runs with
    // `npm run test:slow`, and CI runs both.
    projects: [
      { extends: true, test: { name: "unit", include: ["test/unit/**/*.test.ts"] } },
      { extends: true, test: { name: "integration", include: ["test/integration/**/*.test.ts"], exclude: SLOW } },
      { extends: true, test: { name: "slow", include: SLOW } },
    ],
  },
});

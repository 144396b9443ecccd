import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";
import ShuffledLongFirst from "./test/helpers/sequencer.ts";

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
  "test/integration/redis-scripts.test.ts",
  "test/integration/response-cache-faults.test.ts",
  "test/integration/demo-token-exposure.test.ts",
  "test/integration/opening-timeouts.test.ts",
  "test/integration/sql-plans-faults.test.ts",
  "test/integration/quota-rollback.test.ts",
];

/**
 * Integration files that make placements (a schema or a database, every
 * migration run in it) and move tenants between them: seconds to a minute
 * of DDL each. Their own project, `heavy`, so `npm test` stays fast;
 * `npm run test:heavy` runs them, and `npm run test:all` (CI) runs them
 * together with the integration files, longest first. (The isolation
 * battery over the three placements is `npm run test:spread`.)
 */
const HEAVY = ["test/integration/placement*.test.ts", "test/integration/tenant-stats.test.ts"];

/** Files that mock a module (vi.mock): they need a module registry of their own. */
const MOCKING = ["test/integration/jit.test.ts"];

/**
 * Test files at once. Vitest's default is one per core but one (1 on a
 * 2-core machine: every file after the other), while an integration file
 * spends most of its time waiting on PostgreSQL and Redis: three files at
 * once keep both cores busy. The slow project runs after the others, two
 * files at a time: its files start processes and then mostly wait (for a
 * server to be ready, a Redis to restart, a statement timeout), so one file
 * at a time left a core idle; no assertion of theirs depends on how long
 * anything took.
 *
 * Integration files share their worker's modules (isolate: false): the app
 * (schema, Pothos, Prisma) is imported once per worker instead of once per
 * file (about 3 s each). Each file still builds its own app over its own
 * database; module-level state is limited to caches keyed by random ids.
 */
const WORKERS = Math.max(3, availableParallelism());

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
    // Files and the tests inside each run in a random order (the seed is
    // printed; TEST_SEED=N replays an order): no test may depend on another
    // having run before it, and CI keeps that honest. The longest files still
    // start first (test/helpers/sequencer.ts). Not `--sequence.seed=N` over
    // several projects: a `sequence` given on the command line replaces each
    // project's, and the slow project loses its groupOrder (vitest refuses).
    sequence: {
      shuffle: { files: true, tests: true },
      sequencer: ShuffledLongFirst,
      ...(process.env.TEST_SEED ? { seed: Number(process.env.TEST_SEED) } : {}),
    },
    // `npm test` runs unit + integration (and integration-isolated); the heavy project (placements
    // made and tenants moved) runs with `npm run test:heavy`, the slow one (processes started,
    // timeouts waited for, 100,000 rows streamed; two files at once, after the others) with
    // `npm run test:slow`; CI runs them all (`npm run test:all`).
    projects: [
      { extends: true, test: { name: "unit", include: ["test/unit/**/*.test.ts"], maxWorkers: WORKERS } },
      {
        extends: true,
        test: { name: "integration", include: ["test/integration/**/*.test.ts"], exclude: [...SLOW, ...HEAVY, ...MOCKING], maxWorkers: WORKERS, isolate: false },
      },
      { extends: true, test: { name: "heavy", include: HEAVY, maxWorkers: WORKERS, isolate: false } },
      { extends: true, test: { name: "integration-isolated", include: MOCKING, maxWorkers: WORKERS } },
      // Its tests start processes: on a loaded machine a start alone can outlast 30 s (nothing asserts a duration).
      { extends: true, test: { name: "slow", include: SLOW, maxWorkers: 2, testTimeout: 120_000, sequence: { groupOrder: 1, shuffle: { files: true, tests: true } } } },
    ],
  },
});

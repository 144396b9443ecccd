/**
 * The randomized model-based isolation test (test/helpers/isolation-model.ts),
 * once with each wall alone: 300 operations per wall (`npm run test:all`,
 * CI, test:spread), 100 in `npm test` (its script sets MODEL_OPS, the quick
 * run); `npm run test:model` runs MODEL_OPS (default 10,000) per wall and
 * prints the figures. MODEL_SEED replays a run.
 *
 * The control, both walls off, must find leaks: that is what shows the model
 * and its checks can fail. Under TEST_PLACEMENTS=spread (npm run test:spread)
 * the walls' runs have globex in a schema and wayne in a database of their own.
 */
import { afterAll, describe, expect, it } from "vitest";
import { createModelEnv, runIsolationModel, type ModelEnv, type Wall } from "../helpers/isolation-model.ts";

const OPS = Number(process.env.MODEL_OPS ?? 300);
const SEED = process.env.MODEL_SEED ? Number(process.env.MODEL_SEED) : undefined;
if (!Number.isSafeInteger(OPS) || OPS < 1) throw new Error(`MODEL_OPS=${process.env.MODEL_OPS}: a positive integer`);
// The control finds foreign rows within a few operations (80 to 170 in 150): as many as the walls get, at most 150.
const CONTROL_OPS = Math.min(150, OPS);
// Generous: up to 400 ms an operation on a loaded 2-core machine, plus setup.
const TIMEOUT = 120_000 + OPS * 400;

const envs: ModelEnv[] = [];
afterAll(async () => {
  await Promise.allSettled(envs.map((e) => e.close()));
});

async function run(wall: Wall, operations: number, options: { spread?: boolean } = {}) {
  const env = await createModelEnv(wall, options);
  envs.push(env);
  const started = performance.now();
  const result = await runIsolationModel(env, { operations, seed: SEED });
  const seconds = (performance.now() - started) / 1000;
  const line = {
    wall,
    operations: result.operations,
    mutations: result.mutations,
    answeredWithData: result.answered,
    runs: result.runs,
    seed: result.seed,
    violations: result.violations.length,
    seconds: Number(seconds.toFixed(1)),
    errorCodes: result.errorCodes,
  };
  console.log(`isolation model: ${JSON.stringify(line)}`);
  return result;
}

describe("randomized isolation model", () => {
  for (const wall of ["scope", "rls"] as const) {
    it(
      `wall ${wall === "scope" ? "1 alone (Prisma scope, RLS bypassed)" : "2 alone (RLS, Prisma scope off)"}: ${OPS} operations, no foreign row returned or changed`,
      async () => {
        const result = await run(wall, OPS);
        expect(result.operations).toBeGreaterThanOrEqual(OPS);
        // The runs did real work: answers with data and acknowledged mutations.
        expect(result.answered).toBeGreaterThan(OPS / 4);
        expect(result.mutations).toBeGreaterThan(OPS / 10);
        expect(result.violations.slice(0, 20)).toEqual([]);
        // Foreign and bogus ids are refused with coded errors, never a 500.
        expect(result.errorCodes.INTERNAL_SERVER_ERROR ?? 0).toBe(0);
      },
      TIMEOUT,
    );
  }

  it(
    "control: with both walls off the same test finds foreign rows",
    async () => {
      // Its tenants share the tables even under TEST_PLACEMENTS=spread: a
      // placed tenant's rows are out of the others' reach without any wall,
      // so only shared tables show that the checks find leaks.
      const result = await run("none", CONTROL_OPS, { spread: false });
      expect(result.violations.length).toBeGreaterThan(0);
      expect(result.violations.some((v) => /not of its tenant/.test(v))).toBe(true);
    },
    120_000 + CONTROL_OPS * 60,
  );
});

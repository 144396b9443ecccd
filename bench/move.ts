import { PlacementAdmin, placementFor, placementKey, POOLED, type PlacementRef } from "../src/db/placement-admin.ts";
import { moveTenantRows } from "../src/db/placement-move.ts";
import { benchOptions, int } from "./options.ts";
import { seedBenchDatabase } from "./seed.ts";

/**
 * npm run bench:move: how long moveTenant takes and how long it refuses the
 * tenant's writes (docs/placement.md, "Moving a tenant"), for a tenant of
 * 20 projects x 50 deployments and one of 10x that (BENCH_MOVE_PROJECTS,
 * comma-separated). Each size gets its own database (the bench seed with two
 * tenants), then the first tenant tours POOLED -> DATABASE -> SCHEMA ->
 * POOLED, BENCH_RUNS times; the medians per move are printed. Only
 * DATABASE_URL is needed (the move does not use Redis).
 *
 *   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres npm run bench:move
 */

const env: NodeJS.ProcessEnv = { ...process.env, REDIS_URL: process.env.REDIS_URL || "redis://unused", BENCH_DATABASE: process.env.BENCH_DATABASE || "tenantgraph_movebench" };
const base = benchOptions(env);
const runs = int(env, "BENCH_RUNS", 3);
const sizes = (env.BENCH_MOVE_PROJECTS ?? "20,200").split(",").map((s) => Number(s.trim()));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const lines: string[] = [];
for (const projects of sizes) {
  if (!Number.isInteger(projects) || projects < 1) throw new Error(`BENCH_MOVE_PROJECTS: not a positive integer: ${projects}`);
  const fixture = await seedBenchDatabase({ ...base, tenants: 2, projectsPerTenant: projects }, (l) => console.log(l));
  const admin = new PlacementAdmin(fixture.url);
  const tenant = fixture.tenants[0]!;
  const tour: PlacementRef[] = [placementFor(tenant.id, "DATABASE"), placementFor(tenant.id, "SCHEMA"), POOLED];
  const figures = new Map<string, { rows: number; total: number[]; refused: number[] }>();
  let from: PlacementRef = POOLED;
  try {
    for (let run = 0; run < runs; run++) {
      for (const to of tour) {
        const move = await moveTenantRows(admin, tenant.id, from, to);
        const key = `${placementKey(from).split(":")[0]} -> ${placementKey(to).split(":")[0]}`;
        const f = figures.get(key) ?? { rows: move.rows, total: [], refused: [] };
        f.total.push(move.durationMs);
        f.refused.push(move.writesRefusedMs);
        figures.set(key, f);
        console.log(`${projects} projects, run ${run + 1}: ${key}: ${move.rows} rows, ${move.durationMs} ms, writes refused ${move.writesRefusedMs} ms`);
        from = to;
      }
    }
  } finally {
    // The tour ends in POOLED; a failed one leaves a placement on the server (not in the bench database).
    if (from.placement !== "POOLED") await admin.drop(from).catch(() => {});
    await admin.closeOwnerPools();
  }
  for (const [key, f] of figures) {
    lines.push(`| ${projects} x ${base.deploymentsPerProject} | ${key} | ${f.rows} | ${median(f.total)} ms | ${median(f.refused)} ms |`);
  }
}
console.log(`\nmedians of ${runs} runs\n| Tenant (projects x deployments) | Move | Rows | Total | Writes refused |\n|---|---|---|---|---|`);
for (const l of lines) console.log(l);

import os from "node:os";
import { runLoad, type LoadResult } from "./load.ts";
import { samplePools, seedNeighbours } from "./neighbours.ts";
import { benchOptionsOrExit, runMain } from "./options.ts";
import { serverEnv, spawnChild, startScriptFlags, waitReady, type Child } from "./processes.ts";
import { dashboardGen, signTokens, slowQueryGen } from "./scenarios.ts";
import { clearStaleDirectoryCache, seedBenchDatabase } from "./seed.ts";

/**
 * Fairness within a tier (docs/request-path.md, "Fairness within a tier"),
 * paired before/after on a shared machine:
 *
 *   DATABASE_URL=... REDIS_URL=redis://127.0.0.1:6379/<n> BENCH_PORT=... BENCH_DATABASE=... \
 *     npx tsx bench/fairness-ab.ts "before=/work/main" "after=/work/wt-x"
 *
 * Two FREE tenants on one server: a regular FREE tenant's dashboard (the
 * normal one) on BENCH_FAIR_CONNECTIONS (4) closed-loop connections, alone
 * and beside bench-x-free (bench/neighbours.ts) running the slow query on 16
 * closed-loop connections (the noisy one); both share FREE's pool
 * (POOL_SIZE_FREE, 2). Each variant is a checkout (its src/server.ts); they
 * run one at a time, each round in the other order, every phase
 * BENCH_DURATION seconds after BENCH_WARMUP: what the machine does in a
 * round, both variants live through within a minute or two. Prints the
 * normal tenant's p50/p95 alone and with the noisy one, the noisy one's
 * answered req/s, FREE's pool queue, the load average; medians at the end.
 */

const log = (line: string) => process.stdout.write(`[fair] ${line}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const NOISE_CONNECTIONS = 16;

interface Variant {
  label: string;
  dir: string;
}

interface Phase {
  normal: LoadResult;
  noise?: LoadResult;
  freeWaitingMax?: number;
  freeBusy?: number;
  load: number;
}

async function main() {
  const opts = benchOptionsOrExit();
  const variants: Variant[] = process.argv.slice(2).map((arg) => {
    const eq = arg.indexOf("=");
    if (eq < 1) throw new Error(`variant "${arg}": expected label=dir`);
    return { label: arg.slice(0, eq), dir: arg.slice(eq + 1) };
  });
  if (variants.length !== 2) throw new Error("give two variants: before=dir after=dir");
  const connections = Number(process.env.BENCH_FAIR_CONNECTIONS ?? 4);
  const fixture = await seedBenchDatabase(opts, log);
  const neighbours = await seedNeighbours(fixture.url, opts.bulkDeployments ?? 50_000);
  await clearStaleDirectoryCache(opts.redisUrl);
  const normal = fixture.tenants.find((t) => t.plan === "FREE" && t !== fixture.noisy)!;
  const tokens = await signTokens({ ...fixture, tenants: [normal, neighbours.free] }, opts.jwtSecret);
  const dashboard = dashboardGen(tokens, new Set([normal.slug]));
  const slow = slowQueryGen(tokens, neighbours.free.slug);
  log(`normal FREE tenant ${normal.slug} (dashboard, ${connections} connections); noisy FREE tenant ${neighbours.free.slug} (slow query, ${NOISE_CONNECTIONS} connections, ${neighbours.deploymentsPerTenant} deployments)`);

  const phases = new Map<string, { alone: Phase[]; noisy: Phase[] }>(variants.map((v) => [v.label, { alone: [], noisy: [] }]));
  const measure = async (url: string, withNoise: boolean): Promise<Phase> => {
    const noise = withNoise ? runLoad({ url, connections: NOISE_CONNECTIONS, durationS: opts.warmupS + opts.durationS + 1, gen: slow }) : undefined;
    if (opts.warmupS > 0) await runLoad({ url, connections, durationS: opts.warmupS, gen: dashboard });
    const pools = samplePools(url);
    const result = await runLoad({ url, connections, durationS: opts.durationS, gen: dashboard });
    const sample = pools.stop();
    return { normal: result, noise: await noise, freeWaitingMax: sample.waitingMax.app_free, freeBusy: sample.busyMean?.app_free, load: os.loadavg()[0]! };
  };
  const describe = (p: Phase) =>
    `p50 ${p.normal.p50.toFixed(0)} p95 ${p.normal.p95.toFixed(0)} ms ${p.normal.rps.toFixed(1)} req/s errors ${p.normal.errors + p.normal.gqlErrors} non-2xx ${p.normal.non2xx}` +
    (p.noise ? `; noisy ${p.noise.rps.toFixed(1)} req/s p50 ${p.noise.p50.toFixed(0)} ms errors ${p.noise.errors + p.noise.gqlErrors} non-2xx ${p.noise.non2xx}; FREE queue max ${p.freeWaitingMax ?? 0}, busy ${p.freeBusy?.toFixed(2)}` : "") +
    ` (load ${p.load.toFixed(1)})`;

  for (let round = 1; round <= opts.runs; round++) {
    const order = round % 2 ? variants : [...variants].reverse();
    for (const [i, v] of order.entries()) {
      const port = opts.port + 20 + i;
      const child: Child = spawnChild(v.label, [...startScriptFlags(v.dir), "--import", "tsx", "src/server.ts"], v.dir, port, serverEnv(opts, fixture.url));
      try {
        await waitReady(child, 120_000);
        const url = `http://127.0.0.1:${port}`;
        const alone = await measure(url, false);
        const noisy = await measure(url, true);
        phases.get(v.label)!.alone.push(alone);
        phases.get(v.label)!.noisy.push(noisy);
        log(`round ${round}/${opts.runs} ${v.label}: alone ${describe(alone)} | beside the noisy tenant ${describe(noisy)}`);
      } finally {
        await child.stop();
      }
    }
  }
  log(`medians over ${opts.runs} rounds of ${opts.durationS} s (normal FREE tenant's dashboard):`);
  for (const [label, p] of phases) {
    const p95Alone = median(p.alone.map((x) => x.normal.p95));
    const p95Noisy = median(p.noisy.map((x) => x.normal.p95));
    log(
      `  ${label.padEnd(8)} alone p95 ${p95Alone.toFixed(0)} ms (${median(p.alone.map((x) => x.normal.rps)).toFixed(1)} req/s); beside the noisy tenant p50 ${median(p.noisy.map((x) => x.normal.p50)).toFixed(0)} p95 ${p95Noisy.toFixed(0)} ms (${median(p.noisy.map((x) => x.normal.rps)).toFixed(1)} req/s, x${(p95Noisy / p95Alone).toFixed(2)} of alone); noisy ${median(p.noisy.map((x) => x.noise!.rps)).toFixed(1)} req/s answered`,
    );
  }
}

runMain(main);

import { runLoad, post } from "./load.ts";
import { benchOptionsOrExit, runMain } from "./options.ts";
import { execSync } from "node:child_process";
import { cpuMs, rssMb, sampleRss, serverEnv, spawnChild, startScript, waitReady, type Child } from "./processes.ts";
import { cachedDashboardGen, dashboardGen, mutationMixGen, readMostlyGen, signTokens, withoutTenant, type Tokens } from "./scenarios.ts";
import type { LoadResult, RequestGenerator } from "./load.ts";
import { clearStaleDirectoryCache, loadFixture, seedBenchDatabase } from "./seed.ts";

/**
 * Paired A/B of server variants on a shared machine:
 *
 *   DATABASE_URL=... REDIS_URL=... npx tsx bench/ab.ts "base=/work/wt-a" "semi32=/work/wt-a|--max-old-space-size=224 --max-semi-space-size=32" ...
 *
 * Each variant is a checkout (its src/server.ts through tsx) and optional V8
 * flags (default: npm start's, from that checkout's package.json). All
 * variants run at the same time on the bench database, each loaded with the
 * dashboard at BENCH_CONNECTIONS / (number of variants) connections, for
 * BENCH_RUNS rounds of BENCH_DURATION seconds (after BENCH_AB_WARM_REQUESTS, 600,
 * requests each): whatever else the machine does
 * in a round, every variant lives through it alike, so their CPU per request
 * compares where successive `npm run bench` runs on a busy machine do not
 * (their load moves between runs by more than the difference measured).
 * Prints each round's CPU ms per request, req/s, the response cache's hit
 * rate (X-Cache) and peak RSS per variant, and the medians; the answers are
 * checked identical first. RSS at rest is each variant's RSS once ready,
 * before any request (the largest of its samples over 2 s).
 *
 * BENCH_SERVER=dist: each variant is built (`npm run build` in its
 * checkout) and runs its compiled `dist/server.js`, with `npm run
 * start:prod`'s flags by default (the production start); otherwise src/server.ts through tsx.
 *
 * BENCH_AB_SCENARIO picks the load (default `dashboard`): `cached` (the
 * dashboard allowed to use the response cache: the HIT path), `read-mostly`
 * (issue 14's mix: 95% cached dashboards, 5% createDeployment) or
 * `mutation-mix` (90% uncached dashboards, 10% createDeployment) or
 * `mutation` (createDeployment alone, outside the noisy tenant whose quota
 * refuses). CPU per request is then per request of that mix.
 */

const log = (line: string) => process.stdout.write(`[ab] ${line}\n`);

interface Variant {
  label: string;
  dir: string;
  flags: string[] | null;
  /** NAME=value words among the flags: the server's environment (e.g. MALLOC_ARENA_MAX=2). */
  env: Record<string, string>;
}

const ENV_WORD = /^[A-Z_][A-Z0-9_]*=/;

function parseVariant(arg: string): Variant {
  const eq = arg.indexOf("=");
  if (eq < 1) throw new Error(`variant "${arg}": expected label=dir[|flags]`);
  const label = arg.slice(0, eq);
  const [dir, flags] = arg.slice(eq + 1).split("|") as [string, string | undefined];
  const words = flags?.trim() ? flags.trim().split(/\s+/) : [];
  const env = Object.fromEntries(words.filter((w) => ENV_WORD.test(w)).map((w) => [w.slice(0, w.indexOf("=")), w.slice(w.indexOf("=") + 1)]));
  const nodeFlags = words.filter((w) => !ENV_WORD.test(w));
  return { label, dir, flags: words.length ? nodeFlags : null, env };
}

const compiled = process.env.BENCH_SERVER === "dist";

function startServer(v: Variant, flags: string[], port: number, env: Record<string, string>): Child {
  return spawnChild(v.label, compiled ? [...flags, "dist/server.js"] : [...flags, "--import", "tsx", "src/server.ts"], v.dir, port, env);
}

const SCENARIOS: Record<string, (tokens: Tokens, others: Set<string>, noisy: string) => RequestGenerator> = {
  dashboard: (tokens, others) => dashboardGen(tokens, others),
  cached: (tokens) => cachedDashboardGen(tokens),
  "read-mostly": (tokens) => readMostlyGen(tokens),
  "mutation-mix": (tokens) => mutationMixGen(tokens),
  mutation: (tokens, _others, noisy) => {
    // The mix's tenth request of every ten is its createDeployment.
    const mix = mutationMixGen(withoutTenant(tokens, noisy));
    return (i) => mix(i * 10 + 9);
  },
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * The response cache's hit rate of one round, from the X-Cache header of
 * every response the load saw (HIT / (HIT + MISS)); NaN when the scenario
 * sends no cacheable reads (every response BYPASS).
 */
const hitRateOf = (r: LoadResult) => r.cache?.hitRate ?? NaN;
const percent = (x: number) => (Number.isNaN(x) ? "-" : `${(x * 100).toFixed(1)}%`);

async function main() {
  const opts = benchOptionsOrExit();
  const variants = process.argv.slice(2).map(parseVariant);
  if (variants.length < 2) throw new Error("give at least two variants: label=dir[|flags]");
  let fixture = await loadFixture(opts);
  if (!fixture) fixture = await seedBenchDatabase(opts, log);
  await clearStaleDirectoryCache(opts.redisUrl);
  const tokens = await signTokens(fixture, opts.jwtSecret);
  const others = new Set(fixture.tenants.filter((t) => t !== fixture.noisy).map((t) => t.slug));
  const scenario = process.env.BENCH_AB_SCENARIO ?? "dashboard";
  const makeGen = SCENARIOS[scenario];
  if (!makeGen) throw new Error(`BENCH_AB_SCENARIO=${scenario}: expected one of ${Object.keys(SCENARIOS).join(", ")}`);
  const gen = makeGen(tokens, others, fixture.noisy.slug);
  const check = dashboardGen(tokens, others);
  const conns = Math.max(1, Math.floor(opts.connections / variants.length));

  const servers: { v: Variant; child: Child; flags: string[] }[] = [];
  try {
    if (compiled) for (const dir of new Set(variants.map((v) => v.dir))) execSync("npm run -s build", { cwd: dir, stdio: "inherit" });
    for (const [i, v] of variants.entries()) {
      const script = startScript(v.dir, compiled ? "start:prod" : "start");
      const flags = v.flags ?? script.flags;
      const env = { ...(v.flags ? {} : script.env), ...v.env };
      servers.push({ v, flags: [...Object.entries(env).map(([k, x]) => `${k}=${x}`), ...flags], child: startServer(v, flags, opts.port + 10 + i, { ...serverEnv(opts, fixture.url), ...env }) });
    }
    await Promise.all(servers.map((s) => waitReady(s.child, 120_000)));
    const atRest = await Promise.all(
      servers.map(async (s) => {
        const sampler = sampleRss(s.child.proc.pid!);
        await new Promise((r) => setTimeout(r, 2_000));
        return sampler.stop();
      }),
    );
    log(`RSS at rest (ready, before any request): ${servers.map((s, i) => `${s.v.label} ${atRest[i]!.toFixed(0)} MB`).join(" | ")}`);
    const answers = await Promise.all(servers.map((s) => post(`http://127.0.0.1:${s.child.port}`, check(0))));
    for (const [i, a] of answers.entries()) {
      if (a.status !== 200 || a.json?.errors) throw new Error(`${servers[i]!.v.label}: ${a.status} ${a.text.slice(0, 300)}`);
      if (a.text !== answers[0]!.text) throw new Error(`${servers[i]!.v.label} answers differently from ${servers[0]!.v.label}`);
    }
    log(`answers identical (${answers[0]!.text.length} bytes); scenario ${scenario}: ${variants.length} variants x ${conns} connections at once`);
    for (const s of servers) log(`${s.v.label}: ${s.v.dir} ${s.flags.join(" ")}`);
    const load = (durationS: number) =>
      Promise.all(servers.map((s) => runLoad({ url: `http://127.0.0.1:${s.child.port}`, connections: conns, durationS, gen })));
    // Warm until every variant has served WARM requests (graphql-jit compiles
    // on the second sight, V8 optimises after many): a few seconds at a few
    // req/s on a busy machine leave CPU per request still falling.
    const warm = Number(process.env.BENCH_AB_WARM_REQUESTS ?? 600);
    for (let served = 0, t0 = Date.now(); served < warm && Date.now() - t0 < 180_000; ) {
      served = Math.min(...(await load(5)).map((r) => r.requests)) + served;
    }
    log(`warmed up: ${warm} requests each`);
    const rows = new Map<string, { cpu: number[]; rps: number[]; p50: number[]; p95: number[]; rss: number[]; hits: number[] }>();
    for (const s of servers) rows.set(s.v.label, { cpu: [], rps: [], p50: [], p95: [], rss: [], hits: [] });
    for (let round = 1; round <= opts.runs; round++) {
      const cpu0 = servers.map((s) => cpuMs(s.child.proc.pid!) ?? NaN);
      const rss = servers.map((s) => sampleRss(s.child.proc.pid!));
      const loadavg = (await import("node:os")).loadavg()[0]!.toFixed(1);
      const results = await load(opts.durationS);
      const parts: string[] = [];
      for (const [i, s] of servers.entries()) {
        const r = results[i]!;
        const cpu = ((cpuMs(s.child.proc.pid!) ?? NaN) - cpu0[i]!) / r.requests;
        const peak = rss[i]!.stop();
        const row = rows.get(s.v.label)!;
        row.cpu.push(cpu);
        row.rps.push(r.rps);
        row.p50.push(r.p50);
        row.p95.push(r.p95);
        row.rss.push(peak);
        row.hits.push(hitRateOf(r));
        parts.push(`${s.v.label} ${cpu.toFixed(2)} ms/req ${r.rps.toFixed(1)} req/s p50 ${r.p50.toFixed(0)} p95 ${r.p95.toFixed(0)} ms hits ${percent(hitRateOf(r))} rss ${peak.toFixed(0)} MB`);
      }
      log(`round ${round}/${opts.runs} (load ${loadavg}): ${parts.join(" | ")}`);
    }
    // The machine's load moves CPU per request of every variant alike within
    // a round: the paired figure is each round's ratio to the first variant.
    const first = rows.get(servers[0]!.v.label)!;
    log(`medians over ${opts.runs} rounds of ${opts.durationS} s (CPU vs ${servers[0]!.v.label}: median of the rounds' ratios):`);
    for (const [label, r] of rows) {
      const ratio = median(r.cpu.map((c, i) => c / first.cpu[i]!));
      log(
        `  ${label.padEnd(16)} CPU ${median(r.cpu).toFixed(2)} ms/req (${((ratio - 1) * 100).toFixed(1)}%; rounds ${r.cpu.map((c, i) => `${((c / first.cpu[i]! - 1) * 100).toFixed(0)}%`).join(" ")}), ${median(r.rps).toFixed(1)} req/s, p50 ${median(r.p50).toFixed(0)} ms, p95 ${median(r.p95).toFixed(0)} ms, hit rate ${percent(median(r.hits))}, peak RSS ${Math.max(...r.rss).toFixed(0)} MB (rounds ${r.rss.map((x) => x.toFixed(0)).join(" ")}; at rest ${atRest[servers.findIndex((s) => s.v.label === label)]!.toFixed(0)}; now ${rssMb(servers.find((s) => s.v.label === label)!.child.proc.pid!)?.toFixed(0)} MB)`,
      );
    }
  } finally {
    await Promise.all(servers.map((s) => s.child.stop()));
  }
}

runMain(main);

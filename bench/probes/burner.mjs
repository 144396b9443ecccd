// A probe for bench/ab.ts (docs/live-updates.md, "Tenth round"): preloaded with --import, it
// burns BURN_PCT % of a core on the main thread, in slices every BURN_EVERY_MS (10 ms).
import { performance } from "node:perf_hooks";
const pct = +(process.env.BURN_PCT ?? 0), every = +(process.env.BURN_EVERY_MS ?? 10);
if (pct > 0) setInterval(() => { const until = performance.now() + (every * pct) / 100; while (performance.now() < until); }, every).unref();

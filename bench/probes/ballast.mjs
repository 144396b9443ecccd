// A probe for bench/ab.ts (docs/live-updates.md, "Tenth round"): preloaded with --import, it
// keeps ~BALLAST_STREAMS x ~600 small objects (~50 KB each; 550 ~ the heap of 1,000 open streams) alive.
const n = +(process.env.BALLAST_STREAMS ?? 1000);
const keep = [];
for (let s = 0; s < n; s++) {
  const objs = [];
  for (let i = 0; i < 130; i++) { const ctx = { s, i, prev: objs[objs.length - 1] ?? null }; objs.push(() => ctx.prev); }
  for (let i = 0; i < 60; i++) objs.push({ a: objs[i], b: `k${s}:${i}`, c: [i, s], d: { e: objs[i + 1] } });
  for (let i = 0; i < 100; i++) objs.push(`str-${s}-${i}-${"x".repeat(i % 40)}`);
  keep.push(objs);
}
globalThis.__ballast = keep;

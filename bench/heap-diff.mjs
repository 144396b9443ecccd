// Two heap snapshots of one process (bench/stream-heap.ts), compared: count and self size of each (type:name), b - a, per unit (e.g. per stream).
//   node --max-old-space-size=4000 bench/heap-diff.mjs a.heapsnapshot b.heapsnapshot [units=1000]   (TOP=n rows)
import fs from "node:fs";
function agg(file) {
  const s = JSON.parse(fs.readFileSync(file, "utf8"));
  const f = s.snapshot.meta.node_fields, types = s.snapshot.meta.node_types[0], n = f.length, nodes = s.nodes, strings = s.strings;
  const it = f.indexOf("type"), iname = f.indexOf("name"), isz = f.indexOf("self_size");
  const m = new Map(); let total = 0;
  for (let i = 0; i < nodes.length; i += n) {
    const t = types[nodes[i + it]]; let nm = strings[nodes[i + iname]];
    if (t === "string" || t === "concatenated string" || t === "sliced string") nm = "";
    if (t === "number") nm = "";
    const k = `${t}:${String(nm).slice(0, 80)}`; const a = m.get(k) ?? [0, 0]; a[0]++; a[1] += nodes[i + isz]; m.set(k, a); total += nodes[i + isz];
  }
  return { m, total };
}
const [a, b, per = "1000"] = process.argv.slice(2);
const A = agg(a), B = agg(b); const P = +per;
console.log(`total self ${(A.total / 1048576).toFixed(1)} -> ${(B.total / 1048576).toFixed(1)} MB; per unit ${((B.total - A.total) / P / 1024).toFixed(1)} KB`);
const rows = [];
for (const [k, v] of B.m) { const o = A.m.get(k) ?? [0, 0]; rows.push([k, (v[0] - o[0]) / P, (v[1] - o[1]) / P]); }
const byType = new Map(); for (const [k, c, s] of rows) { const t = k.split(":")[0]; const x = byType.get(t) ?? [0, 0]; x[0] += c; x[1] += s; byType.set(t, x); }
console.log("by type (count, bytes per unit):"); for (const [t, [c, s]] of [...byType].sort((x, y) => y[1][1] - x[1][1])) console.log(`  ${t.padEnd(20)} ${c.toFixed(1).padStart(7)} ${s.toFixed(0).padStart(7)}`);
console.log("top by bytes per unit:"); for (const [k, c, s] of rows.sort((x, y) => y[2] - x[2]).slice(0, +(process.env.TOP ?? 70))) console.log(`  ${s.toFixed(0).padStart(6)} B ${c.toFixed(2).padStart(6)}x  ${k}`);

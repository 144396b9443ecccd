// A heap snapshot's summary (docs/performance.md, "Memory at rest and under load"):
//   node --max-old-space-size=4000 bench/heap-summary.mjs <file.heapsnapshot> [Name,Name...]
// self size by node type and by constructor; the retained size of each object
// over 512 KB (dominator tree, Cooper-Harvey-Kennedy over the snapshot's
// strong edges) with its immediate dominator; and, for each name given, the
// retained size summed over the objects whose constructor contains it.
import fs from "node:fs";
const file = process.argv[2];
const snap = JSON.parse(fs.readFileSync(file, "utf8"));
const m = snap.snapshot.meta;
const NF = m.node_fields.length, EF = m.edge_fields.length;
const nTypes = m.node_fields.indexOf("type"), nName = m.node_fields.indexOf("name"), nSelf = m.node_fields.indexOf("self_size"), nEdges = m.node_fields.indexOf("edge_count"), nId = m.node_fields.indexOf("id");
const eType = m.edge_fields.indexOf("type"), eName = m.edge_fields.indexOf("name_or_index"), eTo = m.edge_fields.indexOf("to_node");
const nodeTypes = m.node_types[0], edgeTypes = m.edge_types[0];
const nodes = snap.nodes, edges = snap.edges, strings = snap.strings;
const N = nodes.length / NF;
const firstEdge = new Uint32Array(N + 1);
for (let i = 0, e = 0; i < N; i++) { firstEdge[i] = e; e += nodes[i * NF + nEdges] * EF; firstEdge[i + 1] = e; }
const weakType = edgeTypes.indexOf("weak"), shortcut = edgeTypes.indexOf("shortcut");
const self = (i) => nodes[i * NF + nSelf];
const typ = (i) => nodeTypes[nodes[i * NF + nTypes]];
const name = (i) => strings[nodes[i * NF + nName]];
// --- self size aggregation
const agg = new Map();
let total = 0;
for (let i = 0; i < N; i++) {
  const t = typ(i); let k = t === "object" || t === "closure" || t === "native" ? `${t}:${name(i)}` : t === "code" || t === "hidden" || t === "array" ? `${t}:${name(i).slice(0, 40)}` : t;
  const s = self(i); total += s;
  const a = agg.get(k) ?? [0, 0]; a[0] += s; a[1]++; agg.set(k, a);
}
console.log(`nodes ${N}, total self ${(total / 1048576).toFixed(1)} MB`);
const byType = new Map();
for (let i = 0; i < N; i++) byType.set(typ(i), (byType.get(typ(i)) ?? 0) + self(i));
console.log("by type:", [...byType].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${(v / 1048576).toFixed(1)}`).join(", "));
console.log("top self-size groups:");
for (const [k, [s, c]] of [...agg].sort((a, b) => b[1][0] - a[1][0]).slice(0, 30)) console.log(`  ${(s / 1048576).toFixed(2).padStart(7)} MB ${String(c).padStart(7)}  ${k}`);
// --- dominators (Cooper-Harvey-Kennedy on post order), root = node 0
const preds = new Array(N);
const order = new Int32Array(N).fill(-1); const post = [];
{ // iterative DFS
  const stack = [0], it = [firstEdge[0]]; const seen = new Uint8Array(N); seen[0] = 1;
  while (stack.length) {
    const v = stack[stack.length - 1]; let e = it[it.length - 1];
    let pushed = false;
    while (e < firstEdge[v + 1]) {
      const et = edges[e + eType]; const to = edges[e + eTo] / NF; e += EF;
      if (et === weakType || et === shortcut && v !== 0) continue;
      (preds[to] ??= []).push(v);
      if (!seen[to]) { seen[to] = 1; it[it.length - 1] = e; stack.push(to); it.push(firstEdge[to]); pushed = true; break; }
    }
    if (!pushed) { stack.pop(); it.pop(); order[v] = post.length; post.push(v); }
  }
}
const idom = new Int32Array(N).fill(-1); idom[0] = 0;
let changed = true;
while (changed) {
  changed = false;
  for (let k = post.length - 2; k >= 0; k--) {
    const v = post[k]; let nd = -1;
    for (const p of preds[v] ?? []) {
      if (idom[p] === -1 || order[p] === -1) continue;
      if (nd === -1) { nd = p; continue; }
      let a = p, b = nd;
      while (a !== b) { while (order[a] < order[b]) a = idom[a]; while (order[b] < order[a]) b = idom[b]; }
      nd = a;
    }
    if (nd !== -1 && idom[v] !== nd) { idom[v] = nd; changed = true; }
  }
}
const retained = new Float64Array(N);
for (const v of post) { retained[v] += self(v); if (v !== 0 && idom[v] >= 0) retained[idom[v]] += retained[v]; }
console.log(`root retained ${(retained[0] / 1048576).toFixed(1)} MB`);
const want = (process.argv[3] ?? "").split(",").filter(Boolean);
const rAgg = new Map();
for (let i = 0; i < N; i++) {
  const t = typ(i); if (t !== "object" && t !== "closure" && t !== "native" && t!=="string" && t!=="code") continue;
  const k = `${t}:${name(i).slice(0, 60)}`; const a = rAgg.get(k) ?? [0, 0, 0]; a[0] += retained[i]; a[1]++; a[2] = Math.max(a[2], retained[i]); rAgg.set(k, a);
}
console.log("largest single retainers (object/closure), retained MB:");
const singles = [];
for (let i = 0; i < N; i++) if (retained[i] > 512 * 1024 && i !== 0) singles.push(i);
singles.sort((a, b) => retained[b] - retained[a]);
for (const i of singles.slice(0, 60)) {
  const d = idom[i];
  console.log(`  ${(retained[i] / 1048576).toFixed(2).padStart(7)} ${typ(i)}:${name(i).slice(0, 70)}  [idom ${typ(d)}:${name(d).slice(0, 40)}]`);
}
for (const w of want) {
  const hit = [...rAgg].filter(([k]) => k.includes(w));
  for (const [k, [s, c, mx]] of hit.sort((a, b) => b[1][0] - a[1][0]).slice(0, 5)) console.log(`want ${w}: ${k} count ${c} sum-retained ${(s / 1048576).toFixed(2)} MB max ${(mx / 1048576).toFixed(2)}`);
}

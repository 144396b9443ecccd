// Memory figures of a running server, for docs/performance.md ("Memory at rest
// and under load"). Preload it: `node --import ./bench/memory-probe.mjs ... dist/server.js`;
// then `kill -WINCH <pid>` appends process.memoryUsage(), V8's heap spaces and
// code statistics as one JSON line to $PROBE_OUT (default /tmp/memory-probe.log),
// and `kill -URG <pid>` writes a heap snapshot next to it (summarised by
// bench/heap-summary.mjs). Neither signal is used by the server.
import fs from "node:fs";
import path from "node:path";
import v8 from "node:v8";

const out = process.env.PROBE_OUT ?? "/tmp/memory-probe.log";
const mb = (x) => +(x / 1048576).toFixed(1);
const inMb = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, mb(v)]));

process.on("SIGWINCH", () => {
  const spaces = Object.fromEntries(
    v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: mb(s.space_size), used: mb(s.space_used_size), physical: mb(s.physical_space_size) }]),
  );
  const heap = v8.getHeapStatistics();
  const line = {
    pid: process.pid,
    label: process.env.PROBE_LABEL,
    memoryUsage: inMb(process.memoryUsage()),
    spaces,
    code: inMb(v8.getHeapCodeStatistics()),
    heap: { totalPhysical: mb(heap.total_physical_size), malloced: mb(heap.malloced_memory), peakMalloced: mb(heap.peak_malloced_memory), limit: mb(heap.heap_size_limit) },
  };
  fs.appendFileSync(out, JSON.stringify(line) + "\n");
});

process.on("SIGURG", () => {
  const file = v8.writeHeapSnapshot(path.join(path.dirname(out), `${process.env.PROBE_LABEL ?? "server"}-${process.pid}-${Date.now()}.heapsnapshot`));
  fs.appendFileSync(out, JSON.stringify({ pid: process.pid, snapshot: file }) + "\n");
});

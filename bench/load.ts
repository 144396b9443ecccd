import autocannon from "autocannon";

/**
 * One load run with autocannon (programmatic API): every request is built by
 * the scenario's generator from a counter shared by all connections, so the
 * load rotates over tenants and members. Latencies are recorded from each
 * response (autocannon's own histogram has no p95).
 */

export interface GeneratedRequest {
  body: string;
  token: string;
  /**
   * May use the response cache. Every other request is sent with
   * `Cache-Control: no-cache` (X-Cache: BYPASS), so the scenarios measured
   * before the cache existed keep measuring the same work.
   */
  cache?: boolean;
}

/** The request headers of a generated request. */
export const requestHeaders = (req: GeneratedRequest): Record<string, string> => ({
  "content-type": "application/json",
  authorization: `Bearer ${req.token}`,
  ...(req.cache ? {} : { "cache-control": "no-cache" }),
});

/** What the response cache answered (X-Cache), with the latencies of hits and misses. */
export interface CacheFigures {
  hit: number;
  miss: number;
  bypass: number;
  /** hit / (hit + miss); null when no cacheable reads. */
  hitRate: number | null;
  hitP50: number;
  hitP95: number;
  missP50: number;
  missP95: number;
}

export type RequestGenerator = (i: number) => GeneratedRequest;

export interface LoadOptions {
  url: string;
  connections: number;
  durationS: number;
  gen: RequestGenerator;
  /** Fixed request rate over all connections (open-loop noise). */
  overallRate?: number;
}

export interface LoadResult {
  requests: number;
  durationS: number;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  /** Socket errors and timeouts. */
  errors: number;
  non2xx: number;
  /** 2xx responses whose body carries GraphQL errors. */
  gqlErrors: number;
  statusCodes: Record<string, number>;
  /** Present when some response carried X-Cache HIT or MISS. */
  cache?: CacheFigures;
}

export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

export function runLoad(opts: LoadOptions): Promise<LoadResult> {
  let counter = 0;
  let gqlErrors = 0;
  const latencies: number[] = [];
  // onResponse (with the headers) runs synchronously just before the
  // 'response' event of the same response (autocannon's httpClient): the
  // X-Cache it saw is paired with that response's latency.
  let lastCache: string | undefined;
  const byCache: Record<"HIT" | "MISS" | "BYPASS", number[]> = { HIT: [], MISS: [], BYPASS: [] };
  const instance = autocannon({
    url: opts.url,
    connections: opts.connections,
    duration: opts.durationS,
    overallRate: opts.overallRate,
    timeout: 30,
    requests: [
      {
        method: "POST",
        path: "/graphql",
        setupRequest: (req: Record<string, unknown>) => {
          const generated = opts.gen(counter++);
          return {
            ...req,
            method: "POST",
            path: "/graphql",
            headers: requestHeaders(generated),
            body: generated.body,
          };
        },
        onResponse: (status: number, body: string, _context: unknown, headers?: Record<string, string>) => {
          if (status >= 200 && status < 300 && body.includes('"errors"')) gqlErrors++;
          lastCache = headers?.["x-cache"] ?? headers?.["X-Cache"];
        },
      },
    ],
  });
  instance.on("response", (_client: unknown, _status: number, _bytes: number, ms: number) => {
    latencies.push(ms);
    if (lastCache === "HIT" || lastCache === "MISS" || lastCache === "BYPASS") byCache[lastCache].push(ms);
    lastCache = undefined;
  });
  return new Promise((resolve, reject) => {
    instance.on("done", (result: autocannon.Result) => {
      const sorted = Float64Array.from(latencies).sort();
      const codes: Record<string, number> = {};
      for (const [code, v] of Object.entries(result.statusCodeStats ?? {})) codes[code] = Number((v as { count: number }).count);
      resolve({
        requests: latencies.length,
        durationS: result.duration,
        rps: latencies.length / result.duration,
        p50: percentile(sorted, 50),
        p95: percentile(sorted, 95),
        p99: percentile(sorted, 99),
        errors: result.errors,
        non2xx: result.non2xx,
        gqlErrors,
        statusCodes: codes,
        cache: cacheFigures(byCache),
      });
    });
    instance.on("error", reject);
  });
}

function cacheFigures(byCache: Record<"HIT" | "MISS" | "BYPASS", number[]>): CacheFigures | undefined {
  const [hits, misses] = [byCache.HIT, byCache.MISS].map((l) => Float64Array.from(l).sort());
  if (!hits!.length && !misses!.length) return undefined;
  return {
    hit: hits!.length,
    miss: misses!.length,
    bypass: byCache.BYPASS.length,
    hitRate: hits!.length / (hits!.length + misses!.length),
    hitP50: percentile(hits!, 50),
    hitP95: percentile(hits!, 95),
    missP50: percentile(misses!, 50),
    missP95: percentile(misses!, 95),
  };
}

/** One request outside the load: for checks, cursors and statement counts. */
export async function post(url: string, req: GeneratedRequest): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(`${url}/graphql`, { method: "POST", headers: requestHeaders(req), body: req.body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

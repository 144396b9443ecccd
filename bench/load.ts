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
          const { body, token } = opts.gen(counter++);
          return {
            ...req,
            method: "POST",
            path: "/graphql",
            headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
            body,
          };
        },
        onResponse: (status: number, body: string) => {
          if (status >= 200 && status < 300 && body.includes('"errors"')) gqlErrors++;
        },
      },
    ],
  });
  instance.on("response", (_client: unknown, _status: number, _bytes: number, ms: number) => {
    latencies.push(ms);
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
      });
    });
    instance.on("error", reject);
  });
}

/** One request outside the load: for checks, cursors and statement counts. */
export async function post(url: string, req: GeneratedRequest): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${req.token}` },
    body: req.body,
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

import { request } from "node:http";
import type { Replica } from "./replicas.ts";

/**
 * One GraphQL request over a fresh TCP connection (no keep-alive: a request
 * that fails at the network level was then surely sent on its own
 * connection, so "refused" means it never reached the server and "reset"
 * means the server dropped it), with a client-side timeout that marks a hang.
 */

export type Transport = "response" | "refused" | "reset" | "timeout";

export interface Answer {
  transport: Transport;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: any;
  text: string;
  /** performance.now() when the request was sent and when its answer (or failure) came. */
  sentAt: number;
  doneAt: number;
  replica: string;
  /** The replica's SIGTERM generation when the request was sent. */
  generation: number;
  error?: string;
}

export async function post(
  replica: Replica,
  body: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<Answer> {
  const sentAt = performance.now();
  const generation = replica.generation;
  replica.inFlight++;
  const base = { sentAt, replica: replica.name, generation, status: 0, headers: {}, json: undefined, text: "" };
  try {
    return await new Promise<Answer>((resolve) => {
      let settled = false;
      const finish = (a: Omit<Answer, "sentAt" | "doneAt" | "replica" | "generation">) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ ...base, ...a, doneAt: performance.now() });
      };
      const req = request(
        {
          host: "127.0.0.1",
          port: replica.port,
          path: "/graphql",
          method: "POST",
          agent: false,
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), connection: "close", ...headers },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", (err) => finish({ transport: "reset", status: res.statusCode ?? 0, headers: res.headers, json: undefined, text: "", error: String(err) }));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let json: unknown;
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
            finish({ transport: "response", status: res.statusCode ?? 0, headers: res.headers, json, text });
          });
        },
      );
      const timer = setTimeout(() => {
        finish({ transport: "timeout", status: 0, headers: {}, json: undefined, text: "", error: `no answer in ${timeoutMs} ms` });
        req.destroy();
      }, timeoutMs);
      req.on("error", (err: NodeJS.ErrnoException) => {
        finish({ transport: err.code === "ECONNREFUSED" ? "refused" : "reset", status: 0, headers: {}, json: undefined, text: "", error: err.code ?? String(err) });
      });
      req.end(body);
    });
  } finally {
    replica.inFlight--;
  }
}

/** Codes a healthy server may refuse with (SPEC sections 7 and 10), each a 4xx. */
export const REFUSAL_CODES = new Set([
  "UNAUTHENTICATED",
  "TENANT_REQUIRED",
  "TENANT_ACCESS_DENIED",
  "TENANT_SUSPENDED",
  "FORBIDDEN",
  "NOT_FOUND",
  "BAD_USER_INPUT",
  "BAD_REQUEST",
  "QUOTA_EXCEEDED",
  "RATE_LIMITED",
  "QUERY_TOO_COMPLEX",
  "FEATURE_NOT_AVAILABLE",
  // Idempotency keys (docs/idempotency.md): 409 (retried with the same key) and 422.
  "IDEMPOTENCY_KEY_IN_USE",
  "IDEMPOTENCY_KEY_REUSED",
]);
/** Codes of "try again later": HTTP 503 (or 429 for RATE_LIMITED) with Retry-After. */
export const RETRY_CODES = new Set(["SERVICE_UNAVAILABLE", "TENANT_MOVING"]);

/**
 * What an answer means for the checks:
 * - ok: data, no errors;
 * - refused: every error a known 4xx code (an expected or a wrong refusal, the caller decides);
 * - unavailable: a coded 503 with Retry-After (allowed during a fault);
 * - bad: anything else (a 500, INTERNAL_SERVER_ERROR, an uncoded error,
 *   a 503 without Retry-After, a body that is not JSON, a hang);
 * - cut: the connection dropped after the request was sent;
 * - not-sent: the connection was refused (nothing reached the server).
 */
export type Verdict = "ok" | "refused" | "unavailable" | "bad" | "cut" | "not-sent";

export interface Classified {
  verdict: Verdict;
  codes: string[];
  /** Histogram key, e.g. "200 ok", "503 SERVICE_UNAVAILABLE", "timeout". */
  key: string;
  why?: string;
}

export function classify(a: Answer): Classified {
  if (a.transport === "timeout") return { verdict: "bad", codes: [], key: "timeout", why: a.error };
  if (a.transport === "refused") return { verdict: "not-sent", codes: [], key: "ECONNREFUSED" };
  if (a.transport === "reset") return { verdict: "cut", codes: [], key: `cut ${a.error ?? ""}`.trim() };
  const errors: any[] = Array.isArray(a.json?.errors) ? a.json.errors : [];
  const codes = errors.map((e) => (typeof e?.extensions?.code === "string" ? e.extensions.code : "UNCODED"));
  const key = `${a.status} ${codes.length ? [...new Set(codes)].sort().join("+") : "ok"}`;
  if (a.json === undefined || a.json === null || typeof a.json !== "object") {
    return { verdict: "bad", codes, key: `${a.status} not-json`, why: `HTTP ${a.status}, body not JSON` };
  }
  if (errors.length === 0) {
    if (a.status === 200 && a.json.data) return { verdict: "ok", codes, key };
    return { verdict: "bad", codes, key, why: `HTTP ${a.status} without data or errors` };
  }
  const retryAfter = a.headers["retry-after"];
  if (codes.every((c) => RETRY_CODES.has(c))) {
    if (a.status === 503 && retryAfter) return { verdict: "unavailable", codes, key };
    return { verdict: "bad", codes, key: `${key}${retryAfter ? "" : " no-Retry-After"}`, why: `${codes[0]} with HTTP ${a.status}${retryAfter ? "" : " and no Retry-After"}` };
  }
  if (codes.every((c) => REFUSAL_CODES.has(c) || RETRY_CODES.has(c)) && a.status < 500) {
    if (codes.includes("RATE_LIMITED") && !retryAfter) return { verdict: "bad", codes, key, why: "RATE_LIMITED without Retry-After" };
    return { verdict: "refused", codes, key };
  }
  const first = errors.find((e) => !REFUSAL_CODES.has(e?.extensions?.code));
  return { verdict: "bad", codes, key, why: `HTTP ${a.status}: ${String(first?.message ?? "").slice(0, 160)} (${first?.extensions?.code ?? "no code"})` };
}

export interface SeenRow {
  type: string;
  id: string;
}

/**
 * Every row an answer names: objects with a global `id` ("Type:uuid" in
 * base64) and users' e-mails, wherever they sit in `data`.
 */
export function rowsIn(data: unknown, out: { rows: SeenRow[]; emails: string[] } = { rows: [], emails: [] }) {
  if (Array.isArray(data)) {
    for (const v of data) rowsIn(v, out);
  } else if (data && typeof data === "object") {
    for (const [k, v] of Object.entries(data)) {
      if (k === "id" && typeof v === "string") {
        const decoded = Buffer.from(v, "base64").toString("utf8");
        const m = /^([A-Za-z]+):([0-9a-f-]{36})$/.exec(decoded);
        if (m) out.rows.push({ type: m[1]!, id: m[2]! });
      } else if (k === "email" && typeof v === "string") {
        out.emails.push(v);
      } else if (v && typeof v === "object") {
        rowsIn(v, out);
      }
    }
  }
  return out;
}

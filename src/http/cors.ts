/** The shape Yoga's `cors` option takes (whatwg-node's CORSOptions). */
type CorsOptions =
  | { origin: string | string[]; methods: string[]; allowedHeaders: string[]; exposedHeaders: string[]; credentials: boolean; maxAge: number }
  | false;

/** Headers a browser client may send, and those it may read from our responses. */
const ALLOWED_HEADERS = ["content-type", "accept", "authorization", "x-api-key", "x-tenant-id", "x-request-id", "cache-control", "idempotency-key"];
const EXPOSED_HEADERS = ["X-Request-ID", "X-Tenant-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After", "X-Cache", "Idempotency-Replayed"];

/**
 * Yoga's `cors` option from CORS_ORIGINS. Yoga's default reflects any Origin
 * with `Access-Control-Allow-Credentials: true`; here an origin is answered
 * only when it is on the list (then with credentials), `*` allows any origin
 * without credentials (whatwg-node reflects the origin rather than `*`), and anything else gets no CORS headers at all, so the
 * browser keeps the response from the page (an empty list: same-origin only).
 */
export function corsPolicy(origins: readonly string[]): (request: Request) => CorsOptions {
  const allowed = new Set(origins.filter((o) => o !== "*"));
  const anyOrigin = origins.includes("*");
  const common = { methods: ["GET", "POST", "OPTIONS"], allowedHeaders: ALLOWED_HEADERS, exposedHeaders: EXPOSED_HEADERS, maxAge: 600 };
  return (request) => {
    const origin = request.headers.get("origin");
    // The whole list: whatwg-node then answers with the request's origin and `Vary: Origin`.
    if (origin && allowed.has(origin)) return { ...common, origin: [...allowed], credentials: true };
    if (anyOrigin) return { ...common, origin: "*", credentials: false };
    return false;
  };
}

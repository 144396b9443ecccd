import type { Plugin } from "graphql-yoga";
import { errorResponse } from "./json-response.ts";

export interface CsrfPreventionOptions {
  /**
   * Headers that prove the request was preflighted (a browser sends none of
   * them cross-site without the CORS preflight, which CORS_ORIGINS decides).
   * @default ["authorization", "x-api-key", "x-tenant-id", "x-graphql-csrf"]
   */
  requestHeaders?: string[];
}

/** Body types a browser form or `fetch` can send cross-site without a preflight. */
const GRAPHQL_BODY_TYPES = ["application/json", "application/graphql-response+json", "application/graphql+json", "application/graphql"];

const mediaType = (request: Request) => request.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase() ?? "";

/**
 * CSRF prevention, in the spirit of Yoga's csrfPrevention plugin: a request a
 * browser could send from another site without a CORS preflight never
 * reaches GraphQL. A POST must carry a GraphQL body type (JSON): form posts,
 * multipart and `text/plain` are refused with 415 BAD_REQUEST. A GET (queries
 * only; Yoga refuses mutations over GET) must carry one of `requestHeaders`,
 * else 403 BAD_REQUEST. GraphiQL's page (GET with Accept: text/html) is
 * answered before this runs.
 */
export function useCsrfPrevention(options: CsrfPreventionOptions = {}): Plugin {
  const headers = options.requestHeaders ?? ["authorization", "x-api-key", "x-tenant-id", "x-graphql-csrf"];
  return {
    onRequestParse({ request, endResponse }) {
      const method = request.method.toUpperCase();
      if (method === "POST" && !GRAPHQL_BODY_TYPES.includes(mediaType(request))) {
        endResponse(
          errorResponse(415, "BAD_REQUEST", "POST /graphql takes an application/json body (form and text/plain posts are refused: CSRF prevention)", {
            "accept-post": "application/json",
          }),
        );
      } else if (method === "GET" && !headers.some((h) => request.headers.has(h))) {
        endResponse(errorResponse(403, "BAD_REQUEST", `A GET request must carry one of these headers (CSRF prevention): ${headers.join(", ")}`));
      }
    },
  };
}

/** A JSON response answered by an HTTP plugin outside GraphQL execution. */
export const jsonResponse = (body: unknown, status: number, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

/** A GraphQL-shaped error body (`{ errors: [{ message, extensions: { code } }] }`). */
export const errorResponse = (status: number, code: string, message: string, headers: Record<string, string> = {}) =>
  jsonResponse({ errors: [{ message, extensions: { code } }] }, status, headers);

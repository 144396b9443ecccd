import type { GraphQLParams, Plugin } from "graphql-yoga";
import { badRequest as malformed } from "../errors.ts";

const isJsonPost = (request: Request) => {
  const type = request.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase();
  return request.method === "POST" && (type === "application/json" || type === "application/graphql+json");
};

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // Yoga's own parser puts the SyntaxError's message in
    // extensions.originalError, and V8's message quotes the body.
    throw malformed(`${what} is not valid JSON`);
  }
}

async function parseJsonPost(request: Request): Promise<GraphQLParams | GraphQLParams[]> {
  const body = parseJson(await request.text(), "The POST body");
  if (body === null || typeof body !== "object") throw malformed("The POST body must be a JSON object (or an array of them: a batch)");
  return body as GraphQLParams | GraphQLParams[];
}

function parseGet(request: Request): GraphQLParams {
  const params = new URL(request.url).searchParams;
  const json = (name: string) => {
    const raw = params.get(name);
    return raw ? (parseJson(raw, `The ${name} parameter`) as Record<string, unknown>) : undefined;
  };
  return {
    query: params.get("query") ?? undefined,
    operationName: params.get("operationName") ?? undefined,
    variables: json("variables"),
    extensions: json("extensions"),
  };
}

/**
 * Parses JSON request bodies (and GET parameters) in place of Yoga's parsers,
 * which answer malformed JSON with the SyntaxError's message, quoting the
 * body (and whatever secret it held), even in production. Here a malformed
 * body is 400 BAD_REQUEST with a message that names what was malformed and
 * echoes none of it.
 */
export function useJsonBody(): Plugin {
  return {
    onRequestParse({ request, setRequestParser }) {
      if (isJsonPost(request)) setRequestParser(parseJsonPost);
      else if (request.method === "GET") setRequestParser(parseGet);
    },
  };
}

/** The options object a GraphiQL page embeds: `renderYogaGraphiQL(root, {...})` (JSON). */
export function embeddedGraphiqlOptions(html: string): Record<string, any> {
  const start = html.indexOf("renderYogaGraphiQL(");
  if (start < 0) throw new Error("not a GraphiQL page");
  const open = html.indexOf("{", html.indexOf(",", start));
  // JSON.stringify output: find the matching brace, skipping string contents.
  let depth = 0;
  let inString = false;
  for (let i = open; i < html.length; i++) {
    const c = html[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return JSON.parse(html.slice(open, i + 1));
  }
  throw new Error("no options object in the GraphiQL page");
}

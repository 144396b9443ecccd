import { parseArgs } from "node:util";
import { loadConfig } from "../src/config.ts";
import { signDevToken } from "../src/tenancy/tokens.ts";

/** npm run token -- --sub <subject> [--tenant <slug>] [--ttl 1h] */
const { values } = parseArgs({
  options: { sub: { type: "string" }, tenant: { type: "string" }, ttl: { type: "string", default: "1h" } },
});
if (!values.sub) {
  console.error("usage: npm run token -- --sub <subject> [--tenant <slug>] [--ttl 1h]");
  process.exit(2);
}
const config = loadConfig();
console.log(
  await signDevToken({
    secret: config.jwtSecret,
    sub: values.sub,
    tenant: values.tenant,
    ttl: values.ttl,
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
  }),
);

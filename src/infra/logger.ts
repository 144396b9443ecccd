import { pino, type Logger } from "pino";

export type { Logger };

/** Structured JSON logs. Tokens, keys and secrets are redacted by path. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    redact: {
      paths: ["req.headers.authorization", "req.headers['x-api-key']", "*.secret", "*.token", "*.password"],
      censor: "[redacted]",
    },
  });
}

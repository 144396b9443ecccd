import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger };

/** Structured JSON logs. Tokens, keys and secrets are redacted by path. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    redact: {
      paths: ["req.headers.authorization", "req.headers['x-api-key']", "*.secret", "*.token", "*.password"],
      censor: "[redacted]",
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

export interface RequestLogInfo {
  requestId: string;
  tenantId?: string;
}

/**
 * Structured logs (pino). The runtime logs ids, types, states and timings, never event bodies;
 * the redaction paths below are the second line of defence should a body slip into a log call.
 */
import { pino, type Logger } from 'pino';

/** Keys whose values never reach a log line, at the top level and one level down. */
export const REDACTED_KEYS = [
  'plan',
  'contacts',
  'safety',
  'answers',
  'email',
  'name',
  'phone',
  'address',
  'card',
  'payment_method',
  'customer_email',
  'customer_name',
  'raw',
  'body',
] as const;

/** Creates a logger; `LOG_LEVEL` sets its level (info by default). */
export function createLogger(bindings: Record<string, string> = {}): Logger {
  return pino({
    level: process.env.LOG_LEVEL ?? 'info',
    base: { ...bindings },
    redact: { paths: REDACTED_KEYS.flatMap((k) => [k, `*.${k}`]), censor: '[redacted]' },
  });
}

export type { Logger };

/**
 * The msgpack codec of the wire contract. `decode` checks the size, parses msgpack and validates
 * with the message's schema; every failure is a {@link CodecError} whose `code` is also the dead
 * letter reason and whose `field` names what was wrong (never its value, which may be PII).
 */
import { Decoder, Encoder } from '@msgpack/msgpack';
import type { z } from 'zod';

/** Largest body accepted (the largest legal safety plan fits several times over). */
export const MAX_BODY_BYTES = 128 * 1024;

// One of each for the process: msgpack's `encode`/`decode` build a new one (and its buffers) per call.
// Each call here runs to completion, so they are never re-entered.
const encoder = new Encoder();
const decoder = new Decoder();

/** What went wrong in the codec. */
export type CodecErrorCode = 'too_large' | 'malformed' | 'invalid' | 'user_mismatch';

/** A message that cannot be encoded or decoded. */
export class CodecError extends Error {
  override readonly name = 'CodecError';
  readonly code: CodecErrorCode;
  /** Dotted path of the offending field (`answers.8`, `email`), when there is one. */
  readonly field: string | undefined;
  constructor(code: CodecErrorCode, message: string, field?: string) {
    super(field === undefined ? `${code}: ${message}` : `${code}: ${field}: ${message}`);
    this.code = code;
    this.field = field;
  }
}

/** Options of {@link decode} and {@link encode}. */
export interface CodecOptions {
  /** Size limit in bytes; {@link MAX_BODY_BYTES} by default. */
  maxBytes?: number;
  /** When set, the message's `userId` must equal it (the user id token of its subject). */
  userId?: string;
}

/** Validates and encodes a message. Throws {@link CodecError} when it breaks its schema or the size limit. */
export function encode<S extends z.ZodType>(schema: S, value: z.input<S>, options: CodecOptions = {}): Uint8Array {
  const bytes = encoder.encode(validate(schema, value, options));
  checkSize(bytes, options);
  return bytes;
}

/** Decodes and validates a message. Throws {@link CodecError}. */
export function decode<S extends z.ZodType>(schema: S, bytes: Uint8Array, options: CodecOptions = {}): z.output<S> {
  checkSize(bytes, options);
  let value: unknown;
  try {
    value = decoder.decode(bytes);
  } catch (err) {
    throw new CodecError('malformed', `not msgpack (${(err as Error).message.split('\n')[0]})`);
  }
  return validate(schema, value, options);
}

function checkSize(bytes: Uint8Array, options: CodecOptions): void {
  const max = options.maxBytes ?? MAX_BODY_BYTES;
  if (bytes.byteLength > max) throw new CodecError('too_large', `${bytes.byteLength} bytes, limit ${max}`);
}

/**
 * A path segment as an error may name it: an index, or a key that reads as a field name. Anything
 * else came from the input (a garbled value read as a key, a record's key) and may be personal: the
 * field is logged and kept in dead letters, so it is named `<key>` (found by the lane fuzzing).
 */
function fieldName(segment: PropertyKey): string {
  if (typeof segment === 'number') return String(segment);
  const name = String(segment);
  return /^[A-Za-z_][A-Za-z0-9_]{0,31}$/.test(name) ? name : '<key>';
}

function validate<S extends z.ZodType>(schema: S, value: unknown, options: CodecOptions): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
    const field = [...issue.path, ...keys.slice(0, 1)].map(fieldName).join('.') || undefined;
    const message = issue.code === 'unrecognized_keys' ? 'unknown key' : issue.message;
    throw new CodecError('invalid', message, field);
  }
  const data = result.data as { userId?: unknown };
  if (options.userId !== undefined && data.userId !== options.userId) {
    throw new CodecError('user_mismatch', 'does not match the subject', 'userId');
  }
  return result.data;
}

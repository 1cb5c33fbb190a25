/**
 * Dead letters: what the runtime keeps of a message it rejected. Raw bytes are kept for diagnosis
 * only when the body is plain: a msgpack map of event fields that never carry personal content,
 * each holding an id, an enum value, a time or a count. Anything else is redacted: text that is not
 * msgpack (a producer sending JSON), a safety plan, contacts or answers under any name or on any
 * subject, an unknown key, a value with spaces, `@` or `+`; and every body on a safety-content or
 * assessment subject, or on a subject we cannot read. A long body is cut to its first
 * {@link DEAD_LETTER_RAW_BYTES}, so a dead letter always fits its own size limit: a rejection of an
 * oversized message is stored like any other, never retried.
 */
import { decode as unpack } from '@msgpack/msgpack';
import { UserEvent, type UserEventType } from '../machines/events.ts';
import { DEAD_LETTER_RAW_BYTES, type DeadLetter, type DeadLetterReason } from './schemas.ts';
import type { Subjects } from './subjects.ts';

/** Event types whose body may hold personal content. */
export const SENSITIVE_EVENT_TYPES: ReadonlySet<string> = new Set<UserEventType>([
  'safety_plan_updated',
  'emergency_contacts_updated',
  'assessment_completed',
]);

/** The fields of every other event type: ids, types, tiers, statuses, times, counts. */
const PLAIN_FIELDS: ReadonlySet<string> = new Set(
  UserEvent.options.filter((o) => !SENSITIVE_EVENT_TYPES.has(o.shape.type.value)).flatMap((o) => Object.keys(o.shape)),
);

/** An id or an enum value: no spaces, `@` or `+`, so not a name, an e-mail or a phone number. */
const PLAIN_STRING = /^[\w:.-]*$/;

const plainValue = (v: unknown) => v === null || typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && PLAIN_STRING.test(v));

/** Whether a body is a msgpack map of plain fields with plain values (see the module's comment). */
function isPlain(raw: Uint8Array): boolean {
  let body: unknown;
  try {
    body = unpack(raw);
  } catch {
    return false;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body) || ArrayBuffer.isView(body)) return false;
  return Object.entries(body).every(([key, value]) => PLAIN_FIELDS.has(key) && plainValue(value));
}

/** Builds the dead letter for a rejected message: its body redacted unless plain, cut when long. */
export function deadLetter(
  subjects: Subjects,
  input: { reason: DeadLetterReason; detail: string; subject: string; raw: Uint8Array | null; receivedAt: number },
): DeadLetter {
  const { raw } = input;
  const parsed = subjects.parseEvent(input.subject);
  const redacted = raw !== null && (parsed === undefined || SENSITIVE_EVENT_TYPES.has(parsed.type) || !isPlain(raw));
  // A copy: the letter must not pin a large receive buffer while it waits to be stored.
  const kept = raw === null || redacted ? null : raw.slice(0, DEAD_LETTER_RAW_BYTES);
  return {
    reason: input.reason,
    detail: input.detail.slice(0, 500),
    subject: input.subject.slice(0, 256),
    receivedAt: input.receivedAt,
    raw: kept,
    size: raw?.byteLength ?? null,
    truncated: kept !== null && kept.byteLength < raw!.byteLength,
    redacted,
  };
}

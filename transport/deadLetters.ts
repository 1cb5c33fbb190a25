/**
 * Dead letters: what the runtime keeps of a message it rejected. Raw bytes are kept for diagnosis
 * only when the message cannot hold personal content: safety plans, emergency contacts, assessment
 * answers and anything on a subject we cannot read are redacted. A long body is cut to its first
 * {@link DEAD_LETTER_RAW_BYTES}, so a dead letter always fits its own size limit: a rejection of an
 * oversized message is stored like any other, never retried.
 */
import type { UserEventType } from '../machines/events.ts';
import { DEAD_LETTER_RAW_BYTES, type DeadLetter, type DeadLetterReason } from './schemas.ts';
import type { Subjects } from './subjects.ts';

/** Event types whose body may hold personal content. */
export const SENSITIVE_EVENT_TYPES: ReadonlySet<string> = new Set<UserEventType>([
  'safety_plan_updated',
  'emergency_contacts_updated',
  'assessment_completed',
]);

/** Builds the dead letter for a rejected message: its body redacted when it may be personal, cut when long. */
export function deadLetter(
  subjects: Subjects,
  input: { reason: DeadLetterReason; detail: string; subject: string; raw: Uint8Array | null; receivedAt: number },
): DeadLetter {
  const { raw } = input;
  const parsed = subjects.parseEvent(input.subject);
  const redacted = raw !== null && (parsed === undefined || SENSITIVE_EVENT_TYPES.has(parsed.type));
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

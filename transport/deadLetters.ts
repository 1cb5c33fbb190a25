/**
 * Dead letters: what the runtime keeps of a message it rejected. Raw bytes are kept for diagnosis
 * only when the message cannot hold personal content: safety plans, emergency contacts, assessment
 * answers and anything on a subject we cannot read are redacted.
 */
import type { UserEventType } from '../machines/events.ts';
import type { DeadLetter, DeadLetterReason } from './schemas.ts';
import type { Subjects } from './subjects.ts';

/** Event types whose body may hold personal content. */
export const SENSITIVE_EVENT_TYPES: ReadonlySet<string> = new Set<UserEventType>([
  'safety_plan_updated',
  'emergency_contacts_updated',
  'assessment_completed',
]);

/** Builds the dead letter for a rejected message, redacting its body when it may be personal. */
export function deadLetter(
  subjects: Subjects,
  input: { reason: DeadLetterReason; detail: string; subject: string; raw: Uint8Array | null; receivedAt: number },
): DeadLetter {
  const parsed = subjects.parseEvent(input.subject);
  const redacted = input.raw !== null && (parsed === undefined || SENSITIVE_EVENT_TYPES.has(parsed.type));
  return {
    reason: input.reason,
    detail: input.detail.slice(0, 500),
    subject: input.subject.slice(0, 256),
    receivedAt: input.receivedAt,
    raw: redacted ? null : input.raw,
    redacted,
  };
}

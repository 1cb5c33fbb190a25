/**
 * The user's safety content: Stanley-Brown safety plan and emergency contacts (DESIGN §1.5).
 * Kept beside the statechart, not in it: it is personal content, delivered to devices and never
 * written to audit records, dead letters or logs.
 */
import type { EmergencyContact, SafetyPlan, UserEvent } from './events.ts';

/** A user's safety content. */
export interface SafetyContent {
  plan: SafetyPlan | null;
  contacts: EmergencyContact[];
}

/** Safety content of a user who has entered none. */
export const EMPTY_SAFETY: SafetyContent = { plan: null, contacts: [] };

/** The safety content after an event; the same object when the event does not touch it. */
export function applySafetyEvent(safety: SafetyContent, event: UserEvent): SafetyContent {
  switch (event.type) {
    case 'safety_plan_updated':
      return { ...safety, plan: event.plan };
    case 'emergency_contacts_updated':
      return { ...safety, contacts: event.contacts };
    default:
      return safety;
  }
}

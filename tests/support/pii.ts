/**
 * The personal data tests feed the system, in one place: the e-mails, names, addresses, card
 * details, assessment answers, safety plan and emergency contacts fixtures use come from here, so
 * the PII sweep (tests/security/piiSweep.test.ts, scripts/piiSweep.ts) knows every needle. Each value
 * is marked (`pii-sweep`, `Piisweep`) or otherwise unlikely, so a hit is never a coincidence.
 */
import type { EmergencyContact, SafetyPlan } from '../../machines/events.ts';

/** A Stripe customer: what invoices, charges and customer objects carry about the person. */
export const PERSON = {
  email: 'pii-sweep.jordan@quillfeather.invalid',
  name: 'Jordan Piisweep-Quillfeather',
  phone: '+1 555 0142 917',
  address: { line1: '17 Piisweep Lane', line2: null, city: 'Quillbury', state: null, postal_code: 'PS1 7QW', country: 'GB' },
} as const;

/** A card as Stripe describes it (`payment_method_details.card`, `payment_method.card`). */
export const CARD = {
  brand: 'visa',
  last4: '4471',
  fingerprint: 'PiiSweepFp9QzX3w',
  exp_month: 11,
  exp_year: 2031,
  country: 'IS',
  funding: 'credit',
} as const;

/** Assessment answers: each a valid, distinctive sequence (the PHQ-9 one flags item 9, a crisis). */
export const ANSWERS = {
  phq9: [2, 3, 1, 3, 0, 2, 1, 3, 2],
  gad7: [3, 0, 2, 1, 3, 1, 2],
} as const satisfies Record<string, readonly number[]>;

/** A safety plan, one marked line per section. */
export const SAFETY_PLAN: SafetyPlan = {
  warningSigns: ['pii-sweep warning: awake past 4am three nights running'],
  copingStrategies: ['pii-sweep coping: cold water on the face, count the tiles'],
  distractions: ['pii-sweep distraction: the Quillbury lido'],
  peopleToAsk: ['pii-sweep ask: call Aunt Perpetua Piisweep'],
  professionals: ['pii-sweep professional: Dr Oyelaran-Piisweep'],
  safeEnvironment: ['pii-sweep safe: key to the medicine box with a neighbour'],
};

/** Emergency contacts. */
export const EMERGENCY_CONTACTS: EmergencyContact[] = [
  { name: 'Marisol Piisweep-Okonkwo', phone: '+1 555 0173 284', relationship: 'pii-sweep sister' },
  { name: 'Teodor Piisweep', phone: '+44 7700 900 613', relationship: 'pii-sweep friend' },
];

/** Something that must never be found, and how to recognise it in text. */
export interface Needle {
  /** What it is, for the report (never the value itself: the report is a log too). */
  label: string;
  pattern: RegExp;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const text = (label: string, value: string): Needle => ({ label, pattern: new RegExp(escape(value), 'i') });
/** A number list written any usual way: `2,3,1`, `[2, 3, 1]`. */
const sequence = (label: string, values: readonly number[]): Needle => ({ label, pattern: new RegExp(values.join(',\\s*')) });
/** A short value recognised only beside its key (`"last4":"4471"`, `last4=4471`): four digits alone occur anywhere. */
const keyed = (label: string, key: string, value: string): Needle => ({ label, pattern: new RegExp(`${key}\\W{1,6}${escape(value)}\\b`, 'i') });

/** Every needle of the fixtures above. */
export const NEEDLES: readonly Needle[] = [
  // Catches any fragment of the marked values too (a cut or re-worded line).
  { label: 'fixture marker', pattern: /pii-?sweep/i },
  text('customer e-mail', PERSON.email),
  text('customer name', PERSON.name),
  text('customer phone', PERSON.phone),
  text('customer address', PERSON.address.line1),
  text('card fingerprint', CARD.fingerprint),
  keyed('card last4', 'last4', CARD.last4),
  sequence('PHQ-9 answers', ANSWERS.phq9),
  sequence('GAD-7 answers', ANSWERS.gad7),
  ...Object.entries(SAFETY_PLAN).flatMap(([section, lines]) => lines.map((line) => text(`safety plan (${section})`, line))),
  ...EMERGENCY_CONTACTS.flatMap((c, i) => [text(`emergency contact ${i + 1} name`, c.name), text(`emergency contact ${i + 1} phone`, c.phone)]),
];

/** The labels of the needles found in `haystack` (none: clean). */
export function needlesIn(haystack: string): string[] {
  return NEEDLES.filter((n) => n.pattern.test(haystack)).map((n) => n.label);
}

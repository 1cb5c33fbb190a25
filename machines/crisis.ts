/**
 * Crisis levels and what raises them. A crisis is entered by the crisis button, a flagged
 * assessment or a clinician, and only a human act ends it (see `userMachine.ts`).
 */
import type { Score } from './scoring.ts';

/** Crisis severity, lowest first. */
export const CRISIS_LEVELS = ['elevated', 'high', 'critical'] as const;

/** A crisis level. */
export type CrisisLevel = (typeof CRISIS_LEVELS)[number];

/** Who or what started a crisis. */
export type CrisisSource = 'button' | 'assessment' | 'clinician';

/** Level the crisis button starts: a person asking for help is treated as high risk. */
export const BUTTON_CRISIS_LEVEL: CrisisLevel = 'high';

/** The higher of two levels: a new signal can raise a crisis level, never lower it. */
export function maxLevel(a: CrisisLevel, b: CrisisLevel): CrisisLevel {
  return CRISIS_LEVELS.indexOf(a) >= CRISIS_LEVELS.indexOf(b) ? a : b;
}

/**
 * The crisis level a scored assessment calls for, or `null` when it does not.
 * PHQ-9 item 9 answered 2–3 is critical, 1 is high; a total of 20+ alone is elevated.
 */
export function assessmentCrisisLevel(score: Score): CrisisLevel | null {
  if (!score.crisis) return null;
  if (score.selfHarmItem >= 2) return 'critical';
  if (score.selfHarmItem === 1) return 'high';
  return 'elevated';
}

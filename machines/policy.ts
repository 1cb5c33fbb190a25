/**
 * The durations the user statechart works with. One place holds the defaults; tests and
 * deployments override them (`createUserMachine({ ...DEFAULT_POLICY, graceMs: 2000 })`).
 */

const DAY = 24 * 60 * 60 * 1000;

/** Time rules of the user statechart. */
export interface UserPolicy {
  /** Length of the free trial, from the user's first event. */
  trialMs: number;
  /** Length of the grace period after a cancellation or a failed payment. */
  graceMs: number;
  /** Grace length when the user had a crisis within {@link recentCrisisMs}: therapeutic continuity. */
  graceAfterCrisisMs: number;
  /** How far back a crisis counts as recent for the grace length. */
  recentCrisisMs: number;
  /** A safety check-in cannot end a crisis before this hold has passed since it started. */
  crisisHoldMs: number;
}

/** Defaults from the design: 14-day trial, 7-day grace, 14 after a crisis in the last 30 days. */
export const DEFAULT_POLICY: Readonly<UserPolicy> = {
  trialMs: 14 * DAY,
  graceMs: 7 * DAY,
  graceAfterCrisisMs: 14 * DAY,
  recentCrisisMs: 30 * DAY,
  crisisHoldMs: 60 * 60 * 1000,
};

/**
 * PHQ-9 and GAD-7 scoring: totals, severity bands and the PHQ-9 item-9 safety flag.
 * A missing or out-of-range answer makes the assessment invalid; it is never read as 0.
 */

/** The instruments the app administers. */
export const INSTRUMENTS = ['phq9', 'gad7'] as const;

/** An instrument name. */
export type Instrument = (typeof INSTRUMENTS)[number];

/** Number of items per instrument; each item is answered 0–3. */
export const ITEM_COUNT: Readonly<Record<Instrument, number>> = { phq9: 9, gad7: 7 };

/** Highest answer of an item. */
export const MAX_ITEM_SCORE = 3;

/** A severity band. */
export type Band = 'minimal' | 'mild' | 'moderate' | 'moderately_severe' | 'severe';

/** Lowest total of each band, highest band first. */
const BANDS: Readonly<Record<Instrument, ReadonlyArray<readonly [number, Band]>>> = {
  phq9: [
    [20, 'severe'],
    [15, 'moderately_severe'],
    [10, 'moderate'],
    [5, 'mild'],
    [0, 'minimal'],
  ],
  gad7: [
    [15, 'severe'],
    [10, 'moderate'],
    [5, 'mild'],
    [0, 'minimal'],
  ],
};

/** PHQ-9 total from which a crisis starts whatever item 9 says. */
export const PHQ9_CRISIS_TOTAL = 20;

/** The result of scoring an assessment. */
export interface Score {
  instrument: Instrument;
  total: number;
  band: Band;
  /** PHQ-9 item 9 (thoughts of self-harm), 0–3; always 0 for GAD-7. */
  selfHarmItem: number;
  /** PHQ-9 item 9 answered 1 or more: a safety flag whatever the total. */
  selfHarmFlag: boolean;
  /** Whether this result starts (or keeps) a crisis. */
  crisis: boolean;
}

/** Thrown for an assessment that cannot be scored; `item` is the 1-based item at fault, if any. */
export class InvalidAssessmentError extends Error {
  override readonly name = 'InvalidAssessmentError';
  readonly instrument: string;
  readonly item: number | undefined;
  constructor(instrument: string, reason: string, item?: number) {
    super(`invalid ${instrument} assessment: ${reason}`);
    this.instrument = instrument;
    this.item = item;
  }
}

/** Why an answer list is invalid for an instrument, or `undefined` when it is valid. */
export function assessmentProblem(
  instrument: Instrument,
  answers: ReadonlyArray<unknown>,
): { reason: string; item?: number } | undefined {
  const count = ITEM_COUNT[instrument];
  if (answers.length !== count) return { reason: `expected ${count} answers, got ${answers.length}` };
  for (let i = 0; i < count; i++) {
    const a = answers[i];
    if (typeof a !== 'number' || !Number.isInteger(a) || a < 0 || a > MAX_ITEM_SCORE) {
      return { reason: `item ${i + 1} must be an integer 0-${MAX_ITEM_SCORE}`, item: i + 1 };
    }
  }
  return undefined;
}

/** Scores an assessment; throws {@link InvalidAssessmentError} when an answer is missing or out of range. */
export function scoreAssessment(instrument: Instrument, answers: ReadonlyArray<unknown>): Score {
  if (!(instrument in ITEM_COUNT)) throw new InvalidAssessmentError(String(instrument), 'unknown instrument');
  const problem = assessmentProblem(instrument, answers);
  if (problem) throw new InvalidAssessmentError(instrument, problem.reason, problem.item);
  const items = answers as readonly number[];
  const total = items.reduce((sum, a) => sum + a, 0);
  const band = BANDS[instrument].find(([min]) => total >= min)![1];
  const selfHarmItem = instrument === 'phq9' ? items[8]! : 0;
  const selfHarmFlag = selfHarmItem >= 1;
  const crisis = selfHarmFlag || (instrument === 'phq9' && total >= PHQ9_CRISIS_TOTAL);
  return { instrument, total, band, selfHarmItem, selfHarmFlag, crisis };
}

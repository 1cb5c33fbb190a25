/**
 * PHQ-9 / GAD-7 scoring (DESIGN §3 "Clinical scoring"): band edges, the item-9 safety flag, the
 * crisis level an assessment calls for, and invalid answer lists, both in `scoreAssessment` and in
 * the `AssessmentCompleted` event schema.
 */
import { describe, expect, it } from 'vitest';
import { assessmentCrisisLevel } from '../../machines/crisis.ts';
import { AssessmentCompleted } from '../../machines/events.ts';
import { InvalidAssessmentError, scoreAssessment, type Band, type Instrument } from '../../machines/scoring.ts';
import { gad7, phq9 } from './support.ts';

describe('PHQ-9 bands: 0–4 minimal, 5–9 mild, 10–14 moderate, 15–19 moderately severe, 20–27 severe', () => {
  const edges: Array<[number, Band]> = [
    [0, 'minimal'],
    [4, 'minimal'],
    [5, 'mild'],
    [9, 'mild'],
    [10, 'moderate'],
    [14, 'moderate'],
    [15, 'moderately_severe'],
    [19, 'moderately_severe'],
    [20, 'severe'],
    [27, 'severe'],
  ];
  for (const [total, band] of edges) {
    it(`total ${total} (item 9 = 0 where possible) is ${band}`, () => {
      const item9 = total > 24 ? total - 24 : 0;
      const score = scoreAssessment('phq9', phq9(total, item9));
      expect(score.total).toBe(total);
      expect(score.band).toBe(band);
      expect(score.instrument).toBe('phq9');
    });
  }

  it('only totals of 20 or more start a crisis when item 9 is 0', () => {
    expect(scoreAssessment('phq9', phq9(19, 0)).crisis).toBe(false);
    expect(scoreAssessment('phq9', phq9(20, 0)).crisis).toBe(true);
    expect(scoreAssessment('phq9', phq9(24, 0)).crisis).toBe(true);
  });
});

describe('GAD-7 bands: 0–4 minimal, 5–9 mild, 10–14 moderate, 15–21 severe', () => {
  const edges: Array<[number, Band]> = [
    [0, 'minimal'],
    [4, 'minimal'],
    [5, 'mild'],
    [9, 'mild'],
    [10, 'moderate'],
    [14, 'moderate'],
    [15, 'severe'],
    [21, 'severe'],
  ];
  for (const [total, band] of edges) {
    it(`total ${total} is ${band}`, () => {
      const score = scoreAssessment('gad7', gad7(total));
      expect(score.total).toBe(total);
      expect(score.band).toBe(band);
    });
  }

  it('never flags self-harm nor starts a crisis, even at the maximum of 21', () => {
    const score = scoreAssessment('gad7', gad7(21));
    expect(score).toMatchObject({ total: 21, selfHarmItem: 0, selfHarmFlag: false, crisis: false });
    expect(assessmentCrisisLevel(score)).toBeNull();
  });
});

describe('PHQ-9 item 9 (thoughts of self-harm)', () => {
  it('item 9 = 1 alone (total 1) is a safety flag and a crisis, though the band is minimal', () => {
    const score = scoreAssessment('phq9', [0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(score).toEqual({
      instrument: 'phq9',
      total: 1,
      band: 'minimal',
      selfHarmItem: 1,
      selfHarmFlag: true,
      crisis: true,
    });
  });

  it('a total of 20 with item 9 = 0 is a crisis without a safety flag', () => {
    const score = scoreAssessment('phq9', [3, 3, 3, 3, 3, 3, 2, 0, 0]);
    expect(score).toMatchObject({ total: 20, band: 'severe', selfHarmItem: 0, selfHarmFlag: false, crisis: true });
  });

  it('item 9 = 0 with a total of 19 is neither flagged nor a crisis', () => {
    const score = scoreAssessment('phq9', [3, 3, 3, 3, 3, 3, 1, 0, 0]);
    expect(score).toMatchObject({ total: 19, selfHarmFlag: false, crisis: false });
  });

  it('a high answer on another item is not read as item 9', () => {
    expect(scoreAssessment('phq9', [0, 0, 0, 0, 0, 0, 0, 3, 0]).selfHarmFlag).toBe(false);
    expect(scoreAssessment('phq9', [3, 0, 0, 0, 0, 0, 0, 0, 0]).selfHarmFlag).toBe(false);
  });
});

describe('assessmentCrisisLevel', () => {
  const cases: Array<[string, Instrument, number[], string | null]> = [
    ['no crisis: PHQ-9 all zero', 'phq9', phq9(0), null],
    ['no crisis: PHQ-9 total 19, item 9 = 0', 'phq9', phq9(19, 0), null],
    ['no crisis: GAD-7 21', 'gad7', gad7(21), null],
    ['elevated: PHQ-9 total 20, item 9 = 0', 'phq9', phq9(20, 0), 'elevated'],
    ['elevated: PHQ-9 total 24, item 9 = 0', 'phq9', phq9(24, 0), 'elevated'],
    ['high: item 9 = 1, total 1', 'phq9', phq9(1, 1), 'high'],
    ['high: item 9 = 1 even with a total of 25', 'phq9', phq9(25, 1), 'high'],
    ['critical: item 9 = 2, total 2', 'phq9', phq9(2, 2), 'critical'],
    ['critical: item 9 = 3, total 27', 'phq9', phq9(27, 3), 'critical'],
  ];
  for (const [name, instrument, answers, level] of cases) {
    it(name, () => {
      expect(assessmentCrisisLevel(scoreAssessment(instrument, answers))).toBe(level);
    });
  }
});

/** An invalid answer list, and the 1-based item at fault (undefined when it is the count). */
interface InvalidCase {
  name: string;
  instrument: Instrument;
  answers: unknown[];
  item: number | undefined;
}

const invalid: InvalidCase[] = [
  { name: 'PHQ-9 with 8 answers (item 9 missing)', instrument: 'phq9', answers: [0, 0, 0, 0, 0, 0, 0, 0], item: undefined },
  { name: 'PHQ-9 with 10 answers', instrument: 'phq9', answers: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], item: undefined },
  { name: 'PHQ-9 with no answers', instrument: 'phq9', answers: [], item: undefined },
  { name: 'GAD-7 with 9 answers (a PHQ-9 sent as GAD-7)', instrument: 'gad7', answers: [0, 0, 0, 0, 0, 0, 0, 0, 0], item: undefined },
  { name: 'PHQ-9 item 3 = 4 (above 3)', instrument: 'phq9', answers: [0, 0, 4, 0, 0, 0, 0, 0, 0], item: 3 },
  { name: 'PHQ-9 item 9 = 4', instrument: 'phq9', answers: [0, 0, 0, 0, 0, 0, 0, 0, 4], item: 9 },
  { name: 'PHQ-9 item 1 = -1', instrument: 'phq9', answers: [-1, 0, 0, 0, 0, 0, 0, 0, 0], item: 1 },
  { name: 'GAD-7 item 7 = -1', instrument: 'gad7', answers: [0, 0, 0, 0, 0, 0, -1], item: 7 },
  { name: 'PHQ-9 item 5 = 1.5', instrument: 'phq9', answers: [0, 0, 0, 0, 1.5, 0, 0, 0, 0], item: 5 },
  { name: 'GAD-7 item 2 = NaN', instrument: 'gad7', answers: [0, Number.NaN, 0, 0, 0, 0, 0], item: 2 },
  { name: 'PHQ-9 item 9 = Infinity', instrument: 'phq9', answers: [0, 0, 0, 0, 0, 0, 0, 0, Infinity], item: 9 },
];
/** Non-numbers: only `scoreAssessment` sees them; the schema's `z.number()` rejects them itself. */
const nonNumbers: InvalidCase[] = [
  { name: 'PHQ-9 item 4 = "2" (a string)', instrument: 'phq9', answers: [0, 0, 0, '2', 0, 0, 0, 0, 0], item: 4 },
  { name: 'PHQ-9 item 6 = null', instrument: 'phq9', answers: [0, 0, 0, 0, 0, null, 0, 0, 0], item: 6 },
  { name: 'PHQ-9 item 9 undefined (missing, not 0)', instrument: 'phq9', answers: [0, 0, 0, 0, 0, 0, 0, 0, undefined], item: 9 },
  { name: 'GAD-7 item 1 = true', instrument: 'gad7', answers: [true, 0, 0, 0, 0, 0, 0], item: 1 },
];

describe('invalid assessments throw InvalidAssessmentError naming the item', () => {
  for (const c of [...invalid, ...nonNumbers]) {
    it(c.name, () => {
      let thrown: unknown;
      try {
        scoreAssessment(c.instrument, c.answers);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(InvalidAssessmentError);
      const error = thrown as InvalidAssessmentError;
      expect(error.name).toBe('InvalidAssessmentError');
      expect(error.instrument).toBe(c.instrument);
      expect(error.item).toBe(c.item);
    });
  }

  it('a hole in the answer list is a missing item, never a 0', () => {
    const answers: number[] = [0, 0, 0, 0, 0, 0, 0, 0, 0];
    delete answers[3];
    expect(() => scoreAssessment('phq9', answers)).toThrow(InvalidAssessmentError);
    try {
      scoreAssessment('phq9', answers);
    } catch (error) {
      expect((error as InvalidAssessmentError).item).toBe(4);
    }
  });

  it('an unknown instrument is invalid', () => {
    expect(() => scoreAssessment('bdi2' as Instrument, [0])).toThrow(InvalidAssessmentError);
  });
});

describe('AssessmentCompleted schema rejects the same answer lists', () => {
  const event = (instrument: Instrument, answers: unknown[]) => ({
    type: 'assessment_completed',
    id: 'evt-1',
    userId: 'u1',
    at: 1_000,
    instrument,
    answers,
  });

  it('accepts a valid PHQ-9 and a valid GAD-7', () => {
    expect(AssessmentCompleted.safeParse(event('phq9', phq9(27, 3))).success).toBe(true);
    expect(AssessmentCompleted.safeParse(event('gad7', gad7(0))).success).toBe(true);
  });

  for (const c of [...invalid, ...nonNumbers]) {
    const path = c.item === undefined ? ['answers'] : ['answers', c.item - 1];
    it(`${c.name}: rejected at ${path.join('.')}`, () => {
      const parsed = AssessmentCompleted.safeParse(event(c.instrument, c.answers));
      expect(parsed.success).toBe(false);
      expect(parsed.error!.issues.map((i) => i.path)).toContainEqual(path);
    });
  }
});

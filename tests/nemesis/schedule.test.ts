/** The nemesis fault schedule: a pure function of its seed, one fault at a time, every kind soon. */
import { describe, expect, it } from 'vitest';
import { parseOptions } from '../../nemesis/main.ts';
import { between, FAULT_DURATION_MS, FAULT_KINDS, faultSchedule, faultSpanMs, GAP_MS, prng, SERVER_ROLES, shuffled } from '../../nemesis/schedule.ts';

const NODES = ['node-1', 'node-2', 'node-3'];
const options = (seed: number, minutes = 3) => ({ seed, lengthMs: minutes * 60_000, nodes: NODES, partitions: 12 });

describe('the fault schedule', () => {
  it('is the same for the same seed, and another for another seed', () => {
    expect(faultSchedule(options(42))).toEqual(faultSchedule(options(42)));
    expect(faultSchedule(options(42, 30))).toEqual(faultSchedule(options(42, 30)));
    expect(faultSchedule(options(43))).not.toEqual(faultSchedule(options(42)));
  });

  it('is a longer run of the same faults when the run is longer', () => {
    const short = faultSchedule(options(7, 3));
    const long = faultSchedule(options(7, 30));
    expect(long.slice(0, short.length)).toEqual(short);
    expect(long.length).toBeGreaterThan(short.length * 5);
  });

  it('runs one fault at a time, each healed with a gap before the next, all within the run', () => {
    for (const seed of [1, 2, 3, 99, 123_456_789]) {
      const steps = faultSchedule(options(seed, 30));
      let end = 0;
      for (const [i, step] of steps.entries()) {
        expect(step.index).toBe(i);
        const [least, most] = FAULT_DURATION_MS[step.kind];
        expect(step.durationMs).toBeGreaterThanOrEqual(least);
        expect(step.durationMs).toBeLessThanOrEqual(most);
        if (i === 0) expect(step.gapMs).toBe(15_000);
        else expect(step.gapMs).toBeGreaterThanOrEqual(GAP_MS[0]);
        expect(step.atMs).toBe(end + step.gapMs);
        end = step.atMs + faultSpanMs(step);
      }
      expect(end).toBeLessThanOrEqual(30 * 60_000 - 10_000);
    }
  });

  it('brings every kind once in each round of five, node faults to a node, server faults to a role', () => {
    const steps = faultSchedule(options(5, 30));
    for (let round = 0; round + 5 <= steps.length; round += 5) {
      expect(new Set(steps.slice(round, round + 5).map((s) => s.kind))).toEqual(new Set(FAULT_KINDS));
    }
    for (const step of steps) {
      if (step.kind === 'node_kill' || step.kind === 'node_pause') expect(NODES).toContain((step.target as { node: string }).node);
      else {
        const target = step.target as { server: string; lane: string; partition: number };
        expect(SERVER_ROLES).toContain(target.server);
        expect(['normal', 'crisis']).toContain(target.lane);
        expect(target.partition).toBeGreaterThanOrEqual(0);
        expect(target.partition).toBeLessThan(12);
      }
    }
    expect(new Set(steps.filter((s) => 'server' in s.target).map((s) => (s.target as { server: string }).server))).toEqual(new Set(SERVER_ROLES));
  });

  it('fits a few faults into a short run, and none into one too short for any', () => {
    expect(faultSchedule(options(11, 3)).length).toBeGreaterThanOrEqual(4);
    expect(faultSchedule({ ...options(11), lengthMs: 20_000 })).toEqual([]);
  });
});

describe('the seeded randomness', () => {
  it('repeats for a seed and stays in range', () => {
    const a = prng(9);
    const b = prng(9);
    const values = Array.from({ length: 1_000 }, () => a());
    expect(values).toEqual(Array.from({ length: 1_000 }, () => b()));
    expect(values.every((v) => v >= 0 && v < 1)).toBe(true);
    const r = prng(10);
    const ints = Array.from({ length: 1_000 }, () => between(r, 3, 5));
    expect(new Set(ints)).toEqual(new Set([3, 4, 5]));
    expect(shuffled(prng(1), [1, 2, 3, 4, 5]).sort()).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('the command line', () => {
  it('takes the seed, the minutes and the report file; a random seed when none is given', () => {
    expect(parseOptions(['--seed', '12', '--minutes', '30', '--out', 'x.json'])).toMatchObject({ seed: 12, minutes: 30, rate: 40, partitions: 12 });
    expect(parseOptions(['--out', 'x.json']).out).toMatch(/\/x\.json$/);
    expect(parseOptions([], () => 77)).toMatchObject({ seed: 77, minutes: 3 });
    expect(parseOptions([]).out).toMatch(/nemesis\/results\/latest\.json$/);
    expect(() => parseOptions(['--seed', 'abc'])).toThrow(/--seed/);
    expect(() => parseOptions(['--minutes', '0'])).toThrow(/--minutes/);
    expect(() => parseOptions(['--bogus'])).toThrow();
  });
});

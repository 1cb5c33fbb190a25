/**
 * The token bucket (`actors/tokenBucket.ts`), pure, with explicit clock values: a full bucket lets
 * its burst through at once, then refills at its rate up to the burst and no further; a refused
 * event takes nothing; whatever the arrival times, no more pass than the burst plus what the rate
 * gained over the time spanned.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isFull, take, tokensAt, type TokenBucket, type TokenBucketPolicy } from '../../actors/tokenBucket.ts';

const POLICY: TokenBucketPolicy = { ratePerS: 1, burst: 10 };

/** Takes a token at each time in `times`, in order; returns which passed and the last state. */
function run(times: number[], policy = POLICY, start?: TokenBucket): { passed: boolean[]; bucket: TokenBucket | undefined } {
  let bucket = start;
  const passed = times.map((t) => {
    const taken = take(bucket, t, policy);
    bucket = taken.bucket;
    return taken.allowed;
  });
  return { passed, bucket };
}

describe('token bucket', () => {
  it('no state is a full bucket: the burst passes at once, the next is refused', () => {
    expect(tokensAt(undefined, 0, POLICY)).toBe(10);
    const { passed, bucket } = run(Array.from({ length: 12 }, () => 1_000));
    expect(passed).toEqual([...Array(10).fill(true), false, false]);
    expect(bucket).toEqual({ tokens: 0, at: 1_000 });
  });

  it('refills at the rate: one more token each second once the burst is spent', () => {
    const spent = run(Array.from({ length: 10 }, () => 0)).bucket;
    expect(take(spent, 999, POLICY).allowed).toBe(false);
    expect(take(spent, 1_000, POLICY).allowed).toBe(true);
    expect(tokensAt(spent, 2_500, POLICY)).toBe(2.5);
    // Half a second a token at 2 per second.
    expect(run([0, 0, 250, 500, 1_000], { ratePerS: 2, burst: 2 }).passed).toEqual([true, true, false, true, true]);
  });

  it('never holds more than the burst, however long it was idle', () => {
    const spent = run(Array.from({ length: 10 }, () => 0)).bucket;
    expect(tokensAt(spent, 3_600_000, POLICY)).toBe(10);
    expect(isFull(spent, 10_000, POLICY)).toBe(true);
    expect(isFull(spent, 9_999, POLICY)).toBe(false);
    expect(run(Array.from({ length: 11 }, () => 3_600_000), POLICY, spent).passed.filter(Boolean)).toHaveLength(10);
  });

  it('a refused event takes nothing: the bucket refills as if it had not come', () => {
    const spent = run(Array.from({ length: 10 }, () => 0)).bucket;
    const refused = take(spent, 400, POLICY);
    expect(refused.allowed).toBe(false);
    expect(tokensAt(refused.bucket, 1_000, POLICY)).toBe(tokensAt(spent, 1_000, POLICY));
    expect(take(refused.bucket, 1_000, POLICY).allowed).toBe(true);
  });

  it('a clock that goes back gives nothing and takes nothing', () => {
    const bucket: TokenBucket = { tokens: 3, at: 5_000 };
    expect(tokensAt(bucket, 1_000, POLICY)).toBe(3);
  });

  it('over any arrivals, at most the burst plus what the rate gained over their span pass, and a first event always does', () => {
    fc.assert(
      fc.property(
        fc.record({ ratePerS: fc.double({ min: 0.01, max: 100, noNaN: true }), burst: fc.integer({ min: 1, max: 50 }) }),
        fc.array(fc.integer({ min: 0, max: 5_000 }), { minLength: 1, maxLength: 300 }),
        (policy, gaps) => {
          let t = 0;
          const times = gaps.map((gap) => (t += gap));
          const { passed } = run(times, policy);
          const span = times.at(-1)! - times[0]!;
          expect(passed[0]).toBe(true);
          expect(passed.filter(Boolean).length).toBeLessThanOrEqual(policy.burst + (span * policy.ratePerS) / 1000 + 1e-9);
        },
      ),
    );
  });

  it('events no faster than the rate all pass, whatever the burst', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.01, max: 100, noNaN: true }), fc.integer({ min: 1, max: 50 }), fc.nat(1_000), (ratePerS, burst, count) => {
        // A millisecond over the interval: a token's worth, whatever the rounding.
        const every = Math.ceil(1000 / ratePerS) + 1;
        const { passed } = run(Array.from({ length: count }, (_, i) => i * every), { ratePerS, burst });
        expect(passed.every(Boolean)).toBe(true);
      }),
    );
  });
});

/**
 * The normal lane's admission limit (`actors/admission.ts`), pure: it grows while commits are fast
 * and the lane uses it, shrinks when they are slow, stays within its bounds, and keeps the crisis
 * lane's reserve. The runtime tests (priority) check a crisis overtakes a saturated normal lane.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AdaptiveLimit, DEFAULT_ADMISSION } from '../../actors/admission.ts';

/** Feeds `count` commits of `latencyMs`, each with the lane using its whole limit. */
function feed(limit: AdaptiveLimit, latencyMs: number, count: number): AdaptiveLimit {
  for (let i = 0; i < count; i++) limit.observe(latencyMs, limit.limit);
  return limit;
}

describe('AdaptiveLimit', () => {
  it('starts at the initial limit less the crisis reserve', () => {
    expect(new AdaptiveLimit({ initial: 100, reserve: 0.2 }).limit).toBe(80);
  });

  it('grows while commits take less than the target and the lane uses its limit, up to the maximum', () => {
    const limit = feed(new AdaptiveLimit(), 1, 50);
    expect(limit.limit).toBeGreaterThan(new AdaptiveLimit().limit);
    expect(feed(limit, 1, 5_000).limit).toBe(Math.floor(DEFAULT_ADMISSION.max * (1 - DEFAULT_ADMISSION.reserve)));
  });

  it('does not grow when the lane leaves most of it unused', () => {
    const limit = new AdaptiveLimit();
    for (let i = 0; i < 1_000; i++) limit.observe(1, 2);
    expect(limit.limit).toBe(new AdaptiveLimit().limit);
  });

  it('shrinks when commits take longer than the target, down to the minimum', () => {
    const limit = feed(new AdaptiveLimit({ initial: 500 }), 1, 10);
    const before = limit.limit;
    expect(feed(limit, 40, 20).limit).toBeLessThan(before);
    expect(feed(limit, 40, 5_000).limit).toBe(DEFAULT_ADMISSION.min);
  });

  it('settles where commits take about the target: more in flight than that makes them slower', () => {
    // A store that answers in 1 ms per 10 commits in flight: the target (5 ms) is met at 50.
    const limit = new AdaptiveLimit();
    for (let i = 0; i < 20_000; i++) limit.observe(limit.limit / 10, limit.limit);
    expect(limit.latencyMs).toBeGreaterThan(DEFAULT_ADMISSION.targetMs * 0.8);
    expect(limit.latencyMs).toBeLessThan(DEFAULT_ADMISSION.targetMs * 1.5);
  });

  it('whatever the latencies, stays within its bounds', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.double({ min: 0, max: 1_000, noNaN: true }), fc.nat(3_000)), { maxLength: 300 }), (samples) => {
        const limit = new AdaptiveLimit();
        for (const [ms, inFlight] of samples) {
          limit.observe(ms, inFlight);
          expect(limit.limit).toBeGreaterThanOrEqual(DEFAULT_ADMISSION.min);
          expect(limit.limit).toBeLessThanOrEqual(DEFAULT_ADMISSION.max);
        }
      }),
    );
  });
});

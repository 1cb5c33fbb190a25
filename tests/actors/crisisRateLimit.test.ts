/**
 * The crisis lane's per-user rate limit (`actors/crisisRateLimit.ts`), with explicit clock values:
 * only the crisis button on the crisis lane is limited, per user; a run of refusals is counted so a
 * flood is logged once; a resolution refills; and the state kept shrinks back to nothing once the
 * users' buckets are full again, whatever the number of users who pressed. Its settings from the
 * environment.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { configFromEnv, DEFAULT_RUNTIME_CONFIG } from '../../actors/config.ts';
import { CrisisRateLimit, RATE_LIMITED_TYPES } from '../../actors/crisisRateLimit.ts';
import type { TokenBucketPolicy } from '../../actors/tokenBucket.ts';
import { CRISIS_LANE_TYPES } from '../../machines/events.ts';
import { event } from '../support/events.ts';

const POLICY: TokenBucketPolicy = { ratePerS: 1, burst: 10 };

const press = (userId: string) => event(userId, 'crisis_button', { deviceId: 'phone' });

/** Presses `count` times at `now` for `userId`; returns the verdicts. */
function flood(limit: CrisisRateLimit, userId: string, count: number, now: number) {
  return Array.from({ length: count }, () => limit.admit('crisis', press(userId), now));
}

describe('crisis rate limit', () => {
  it('limits only the crisis button, a crisis-lane type', () => {
    expect([...RATE_LIMITED_TYPES]).toEqual(['crisis_button']);
    for (const type of RATE_LIMITED_TYPES) expect(CRISIS_LANE_TYPES.has(type)).toBe(true);
  });

  it('a flood: the burst passes, the rest is refused and counted in a row; a token a second later passes and ends the run', () => {
    const limit = new CrisisRateLimit(POLICY);
    const verdicts = flood(limit, 'a', 13, 0);
    expect(verdicts.slice(0, 10).every((v) => v.allowed)).toBe(true);
    expect(verdicts.slice(10)).toEqual([1, 2, 3].map((inARow) => ({ allowed: false, inARow })));
    expect(flood(limit, 'a', 2, 1_000)).toEqual([{ allowed: true }, { allowed: false, inARow: 1 }]);
  });

  it('one user’s flood leaves another user’s first press alone', () => {
    const limit = new CrisisRateLimit(POLICY);
    flood(limit, 'a', 2_000, 0);
    expect(limit.admit('crisis', press('b'), 0)).toEqual({ allowed: true });
  });

  it('never limits what a device does not send: detections and resolutions, and crisis events on the normal lane', () => {
    const limit = new CrisisRateLimit(POLICY);
    flood(limit, 'a', 20, 0);
    const detected = Array.from({ length: 100 }, () =>
      limit.admit('crisis', event('a', 'crisis_detected', { source: 'clinician', level: 'critical' }), 0),
    );
    const resolved = Array.from({ length: 100 }, () => limit.admit('crisis', event('a', 'crisis_resolved', { by: 'clinician' }), 0));
    const normalLane = Array.from({ length: 100 }, () => limit.admit('normal', press('c'), 0));
    expect([...detected, ...resolved, ...normalLane].every((v) => v.allowed)).toBe(true);
  });

  it('a resolution refills the user’s bucket: the next press starts a new crisis, right after a flood', () => {
    const limit = new CrisisRateLimit(POLICY);
    flood(limit, 'a', 50, 0);
    expect(limit.admit('crisis', press('a'), 1)).toMatchObject({ allowed: false });
    limit.admit('crisis', event('a', 'crisis_resolved', { by: 'clinician' }), 2);
    expect(flood(limit, 'a', 11, 3).map((v) => v.allowed)).toEqual([...Array(10).fill(true), false]);
  });

  it('keeps a user only until their bucket is full again', () => {
    const limit = new CrisisRateLimit(POLICY);
    flood(limit, 'a', 3, 0);
    expect(limit.size).toBe(1);
    limit.prune(2_999);
    expect(limit.size).toBe(1);
    limit.prune(3_000);
    expect(limit.size).toBe(0);
    // Forgotten is full: the burst passes again.
    expect(flood(limit, 'a', 11, 3_000).filter((v) => v.allowed)).toHaveLength(10);
  });

  it('pruning stops at the least recently used user not full yet, and takes the others on a later call', () => {
    const limit = new CrisisRateLimit(POLICY);
    flood(limit, 'drained', 10, 0); // full at 10 s
    flood(limit, 'light', 1, 1_000); // full at 2 s
    limit.prune(5_000);
    expect(limit.size).toBe(2);
    limit.prune(10_000);
    expect(limit.size).toBe(0);
  });

  it('with any number of users pressing, what is kept after a prune is only users who pressed in the last burst / rate seconds', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(999), fc.nat(400)), { maxLength: 500 }),
        fc.integer({ min: 1, max: 20 }),
        (presses, burst) => {
          const policy = { ratePerS: 2, burst };
          const limit = new CrisisRateLimit(policy);
          const lastPress = new Map<string, number>();
          let now = 0;
          for (const [user, gap] of presses) {
            now += gap;
            const userId = `u${user}`;
            limit.admit('crisis', press(userId), now);
            lastPress.set(userId, now);
            limit.prune(now);
            const window = (burst / policy.ratePerS) * 1000;
            const recent = [...lastPress.values()].filter((t) => now - t < window).length;
            expect(limit.size).toBeLessThanOrEqual(recent);
          }
          limit.prune(now + (burst / policy.ratePerS) * 1000);
          expect(limit.size).toBe(0);
        },
      ),
    );
  });
});

describe('crisis rate limit settings', () => {
  it('default to 10 at once then 1 a second; FM_CRISIS_RATE_PER_S and FM_CRISIS_BURST set them', () => {
    expect(DEFAULT_RUNTIME_CONFIG.crisisRateLimit).toEqual({ ratePerS: 1, burst: 10 });
    expect(configFromEnv({}).crisisRateLimit).toEqual({ ratePerS: 1, burst: 10 });
    expect(configFromEnv({ FM_CRISIS_RATE_PER_S: '0.5', FM_CRISIS_BURST: '3' }).crisisRateLimit).toEqual({ ratePerS: 0.5, burst: 3 });
  });

  it('refuse settings that would refuse every press or never refill', () => {
    for (const FM_CRISIS_BURST of ['0', '2.5', '-1', 'ten']) expect(() => configFromEnv({ FM_CRISIS_BURST })).toThrow(/positive integer/);
    for (const FM_CRISIS_RATE_PER_S of ['0', '-1', 'fast']) expect(() => configFromEnv({ FM_CRISIS_RATE_PER_S })).toThrow(/positive number/);
  });
});

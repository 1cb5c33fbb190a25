/** Pure delivery decisions (machines/delivery.ts) and deadlines (machines/deadlines.ts). */
import { describe, expect, it } from 'vitest';
import { deadlineEvent, pendingDeadline } from '../../machines/deadlines.ts';
import { coalesceDelay, compressView, DEFAULT_DELIVERY, isDowngrade, isUrgent } from '../../machines/delivery.ts';
import { deriveView } from '../../machines/deviceView.ts';
import { DEFAULT_POLICY } from '../../machines/policy.ts';
import { DAY, ev, userAfter } from './support.ts';

const trial = userAfter([]);
const basic = userAfter([ev('subscription_activated', { subscriptionId: 's', tier: 'basic', at: DAY })]);
const premium = userAfter([ev('subscription_activated', { subscriptionId: 's', tier: 'premium', at: DAY })]);
const grace = userAfter([
  ev('subscription_activated', { subscriptionId: 's', tier: 'basic', at: DAY }),
  ev('payment_failed', { subscriptionId: 's', attemptCount: 1, nextAttemptAt: null, at: 2 * DAY }),
]);
const basicInCrisis = userAfter([ev('subscription_activated', { subscriptionId: 's', tier: 'basic', at: DAY }), ev('crisis_button', { at: 2 * DAY })]);
const view = (s: typeof trial) => deriveView(s.snapshot);
/** The coalescing window the default delivery policy gives a user's sync frequency. */
const windowOf = (s: typeof trial) => DEFAULT_DELIVERY[view(s).sync.frequency].coalesceMs;

describe('delivery', () => {
  it('premium goes at once; basic and trial hold a same-tier change for their window, trial the longer', () => {
    expect(coalesceDelay(view(premium), view(premium))).toBe(0);
    for (const user of [basic, trial]) {
      expect(windowOf(user)).toBeGreaterThan(0);
      expect(coalesceDelay(view(user), view(user))).toBe(windowOf(user));
    }
    expect(windowOf(trial)).toBeGreaterThan(windowOf(basic));
  });

  it('takes the windows from the delivery policy it is given', () => {
    const frequency = view(basic).sync.frequency;
    const policy = { ...DEFAULT_DELIVERY, [frequency]: { ...DEFAULT_DELIVERY[frequency], coalesceMs: windowOf(basic) + 1 } };
    expect(coalesceDelay(view(basic), view(basic), policy)).toBe(windowOf(basic) + 1);
  });

  it('never holds a crisis or a tier change', () => {
    expect(coalesceDelay(view(basic), view(basicInCrisis))).toBe(0);
    expect(coalesceDelay(view(basicInCrisis), view(basicInCrisis))).toBe(0);
    expect(coalesceDelay(view(trial), view(basic))).toBe(0);
    expect(isUrgent(view(basic), view(grace))).toBe(true);
  });

  it('compresses trial views, never a crisis view', () => {
    expect(compressView(view(trial))).toBe(true);
    expect(compressView(view(basic))).toBe(false);
    const trialInCrisis = userAfter([ev('crisis_button', { at: DAY })]);
    expect(compressView(view(trialInCrisis), DEFAULT_DELIVERY)).toBe(false);
  });

  it('a downgrade is a move to less access: premium → basic, → grace, → lapsed; not trial → paid', () => {
    expect(isDowngrade(view(premium), view(basic))).toBe(true);
    expect(isDowngrade(view(basic), view(grace))).toBe(true);
    expect(isDowngrade(view(trial), view(premium))).toBe(false);
    expect(isDowngrade(view(basic), view(premium))).toBe(false);
  });
});

describe('deadlines', () => {
  it('trial and grace wait for their deadline; paid tiers wait for none', () => {
    expect(pendingDeadline(trial.snapshot)).toEqual({ type: 'trial_ended', at: DEFAULT_POLICY.trialMs });
    expect(pendingDeadline(grace.snapshot)).toEqual({ type: 'grace_ended', at: 2 * DAY + DEFAULT_POLICY.graceMs });
    expect(pendingDeadline(basic.snapshot)).toBeNull();
  });

  it('a deadline event has the deadline as its time and an id that names it, so it applies once', () => {
    const e = deadlineEvent('u1', { type: 'grace_ended', at: 123 });
    expect(e).toEqual({ type: 'grace_ended', id: 'grace_ended:u1:123', userId: 'u1', at: 123 });
    expect(deadlineEvent('u1', { type: 'grace_ended', at: 123 }).id).toBe(e.id);
  });
});

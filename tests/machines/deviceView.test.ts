/**
 * The device view's crisis watermark and the provisional crisis a device shows for a press it heard
 * before the runtime applied it (machines/deviceView.ts). Expected values come from DESIGN §3 and the
 * README's crisis path: the provisional view is what the statechart derives once it applies the press.
 */
import { describe, expect, it } from 'vitest';
import { accountsFor, withProvisionalCrisis } from '../../machines/deviceView.ts';
import { applyAll, DAY, ev, expectCrisisInvariants, MINUTE, userAfter, viewOf } from './support.ts';

const basic = userAfter([ev('subscription_activated', { subscriptionId: 's', tier: 'basic', at: DAY })]);
const press = (at: number) => ev('crisis_button', { at, deviceId: 'phone' });

describe('crisis watermark (signalsUntil)', () => {
  it('is null before any crisis, the latest signal during one, and the resolution after it', () => {
    expect(viewOf(basic).crisis.signalsUntil).toBeNull();
    const inCrisis = applyAll(basic, [press(2 * DAY), ev('crisis_detected', { source: 'assessment', level: 'elevated', at: 2 * DAY + MINUTE })]);
    expect(viewOf(inCrisis).crisis.signalsUntil).toBe(2 * DAY + MINUTE);
    const resolved = applyAll(inCrisis, [ev('crisis_resolved', { by: 'clinician', at: 2 * DAY + 5 * MINUTE })]);
    expect(viewOf(resolved).crisis.signalsUntil).toBe(2 * DAY + 5 * MINUTE);
  });

  it('a view accounts for a press at or before its watermark, not for a later one', () => {
    const inCrisis = viewOf(applyAll(basic, [press(2 * DAY)]));
    expect(accountsFor(inCrisis, { id: 'p', at: 2 * DAY })).toBe(true);
    expect(accountsFor(inCrisis, { id: 'p', at: 2 * DAY - 1 })).toBe(true);
    expect(accountsFor(inCrisis, { id: 'p', at: 2 * DAY + 1 })).toBe(false);
    expect(accountsFor(viewOf(basic), { id: 'p', at: 0 })).toBe(false);
  });
});

describe('provisional crisis', () => {
  it('is the view the statechart derives once it applies the press, but for the watermark', () => {
    const at = 2 * DAY;
    const provisional = withProvisionalCrisis(viewOf(basic), [{ id: 'p', at }]);
    const applied = viewOf(applyAll(basic, [press(at)]));
    expect(provisional).toEqual({ ...applied, crisis: { ...applied.crisis, signalsUntil: null } });
    expectCrisisInvariants(provisional, 'provisional');
    expect(provisional.crisis).toMatchObject({ active: true, level: 'high', since: at });
    expect(provisional.sync.priority).toBe('CRISIS_EMERGENCY');
  });

  it('starts at the earliest press heard, and changes nothing without one', () => {
    const view = viewOf(basic);
    expect(withProvisionalCrisis(view, [])).toBe(view);
    expect(withProvisionalCrisis(view, [{ id: 'b', at: 3 * DAY }, { id: 'a', at: 2 * DAY }]).crisis.since).toBe(2 * DAY);
  });

  it('over an active crisis raises its level to a press\'s and keeps when it started', () => {
    const elevated = viewOf(applyAll(basic, [ev('crisis_detected', { source: 'assessment', level: 'elevated', at: 2 * DAY })]));
    const raised = withProvisionalCrisis(elevated, [{ id: 'p', at: 3 * DAY }]);
    expect(raised.crisis).toMatchObject({ active: true, level: 'high', since: 2 * DAY, signalsUntil: 2 * DAY });
    const critical = viewOf(applyAll(basic, [ev('crisis_detected', { source: 'clinician', level: 'critical', at: 2 * DAY })]));
    expect(withProvisionalCrisis(critical, [{ id: 'p', at: 3 * DAY }]).crisis.level).toBe('critical');
  });
});

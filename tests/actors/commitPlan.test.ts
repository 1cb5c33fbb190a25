/**
 * The commit plan (`actors/commitPlan.ts`), pure: versions, targets, removed devices, orphaned views
 * left by a previous owner, the outbox to finish, the deadline. No server: the plan is data in,
 * data out; the runtime tests check that the actor performs it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deviceViewOf, planCommit, type CommitInput, type Committed } from '../../actors/commitPlan.ts';
import { DEFAULT_RUNTIME_CONFIG } from '../../actors/config.ts';
import { deriveView } from '../../machines/deviceView.ts';
import type { UserEvent } from '../../machines/events.ts';
import { EMPTY_SAFETY, type SafetyContent } from '../../machines/safety.ts';
import { foldEvents, toPersisted, createUserState, type UserState } from '../../machines/userState.ts';
import type { AuditRecord, DeviceView } from '../../transport/schemas.ts';
import { sameDeviceContent } from '../../transport/viewWire.ts';
import { DAY, ev, USER } from '../machines/support.ts';

const LINES = DEFAULT_RUNTIME_CONFIG.crisisLines;
const PLAN: SafetyContent = { plan: null, contacts: [{ name: 'Sam', phone: '+15550100' }] };

/** A user after `events` (devices registered by events), created at 0. */
function after(...events: UserEvent[]): UserState {
  return foldEvents(createUserState(USER, 0), events);
}
const register = (deviceId: string) => ev('device_registered', { deviceId, platform: 'ios', at: 1 });
const premium = ev('subscription_activated', { at: 2, tier: 'premium', subscriptionId: 's' });
const failed = ev('payment_failed', { at: 3, subscriptionId: 's', attemptCount: 1, nextAttemptAt: null });

function committedOf(state: UserState, safety: SafetyContent = EMPTY_SAFETY): Committed {
  return { snapshot: state.snapshot, view: deriveView(state.snapshot), safety, devices: [...state.snapshot.context.devices] };
}

function input(committed: Committed, state: UserState, overrides: Partial<CommitInput> = {}): CommitInput {
  return {
    userId: USER,
    committed,
    state,
    view: deriveView(state.snapshot),
    safety: committed.safety,
    viewVersion: 3,
    lastSeq: { normal: 10, crisis: 0 },
    audits: [],
    stored: null,
    unfinished: null,
    crisisLines: LINES,
    ...overrides,
  };
}

const audit = (eventId: string): AuditRecord => ({
  userId: USER,
  eventId,
  eventType: 'payment_failed',
  at: 3,
  recordedAt: 4,
  from: { subscription: 'premium', crisis: 'stable' },
  to: { subscription: 'grace_period', crisis: 'stable' },
  crisisLevel: null,
  viewVersion: null,
});

describe('planCommit', () => {
  const phone = after(register('phone'), premium);

  it("a new user's first commit sends version 1 to every device", () => {
    const state = after(register('phone'), register('web'));
    const plan = planCommit(input(committedOf(createUserState(USER, 0)), state, { viewVersion: 0 }));
    expect(plan.version).toBe(1);
    expect(plan.outbox.viewDevices).toEqual(['phone', 'web']);
    expect(plan.record).toMatchObject({ viewVersion: 1, lastSeq: { normal: 10, crisis: 0 }, outbox: plan.outbox });
  });

  it('a changed view goes to every device at version + 1, and its audit records name that version', () => {
    const next = after(register('phone'), premium, failed);
    const plan = planCommit(input(committedOf(phone), next, { audits: [audit('e1')] }));
    expect(plan.version).toBe(4);
    expect(plan.outbox).toEqual({ viewDevices: ['phone'], audits: [{ ...audit('e1'), viewVersion: 4 }], removed: [] });
    expect(plan.record.state).toEqual(toPersisted(next));
  });

  it('an unchanged view keeps its version; only a newly registered device gets it; the record has no outbox', () => {
    expect(planCommit(input(committedOf(phone), phone))).toMatchObject({ version: 3, outbox: { viewDevices: [], removed: [] } });
    expect(planCommit(input(committedOf(phone), phone)).record.outbox).toBeUndefined();
    const withWeb = after(register('phone'), premium, register('web'));
    expect(planCommit(input(committedOf(phone), withWeb)).outbox.viewDevices).toEqual(['web']);
  });

  it('a removed device is purged and gets nothing', () => {
    const gone = after(register('phone'), premium, ev('device_removed', { deviceId: 'phone', at: 4 }));
    expect(planCommit(input(committedOf(phone), gone)).outbox).toMatchObject({ viewDevices: [], removed: ['phone'] });
  });

  it('safety content is compared by value: new contacts are a change, an equal copy is not', () => {
    const before = committedOf(phone, PLAN);
    expect(planCommit(input(before, phone, { safety: structuredClone(PLAN) })).version).toBe(3);
    expect(planCommit(input(before, phone, { safety: EMPTY_SAFETY })).version).toBe(4);
  });

  it('devices holding a version the record does not know, with the current content: the version is adopted, nothing sent', () => {
    const next = after(register('phone'), premium, failed);
    const held = deviceViewOf(USER, 'phone', 4, deriveView(next.snapshot), EMPTY_SAFETY, LINES, 99);
    const plan = planCommit(input(committedOf(phone), next, { stored: new Map([['phone', held]]) }));
    expect(plan).toMatchObject({ version: 4, orphaned: true, outbox: { viewDevices: [] } });
  });

  it('devices holding a version the record does not know, with other content: the current view goes above it', () => {
    const next = after(register('phone'), premium, failed);
    const held = deviceViewOf(USER, 'phone', 4, deriveView(phone.snapshot), EMPTY_SAFETY, LINES, 99);
    const plan = planCommit(input(committedOf(phone), next, { stored: new Map([['phone', held]]) }));
    expect(plan).toMatchObject({ version: 5, orphaned: true, outbox: { viewDevices: ['phone'] } });
  });

  it("the loaded record's output is finished first: with its views only while no device holds them", () => {
    const record = { ...planCommit(input(committedOf(phone), phone)).record, outbox: { viewDevices: ['phone'], audits: [audit('e0')], removed: [] } };
    const older = deviceViewOf(USER, 'phone', 2, deriveView(phone.snapshot), EMPTY_SAFETY, LINES, 0);
    const current = { ...older, version: 3 };
    expect(planCommit(input(committedOf(phone), phone, { unfinished: record, stored: new Map([['phone', older]]) })).resume).toEqual(record.outbox);
    expect(planCommit(input(committedOf(phone), phone, { unfinished: record, stored: new Map([['phone', current]]) })).resume).toEqual({
      ...record.outbox,
      viewDevices: [],
    });
    // Without a redelivery in the batch the devices are not read, and nothing is resumed.
    expect(planCommit(input(committedOf(phone), phone, { unfinished: record })).resume).toBeNull();
  });

  it('the deadline is written only when it changed', () => {
    const grace = after(register('phone'), premium, failed);
    expect(planCommit(input(committedOf(phone), grace)).deadline).toEqual({ type: 'grace_ended', at: 3 + 7 * DAY });
    expect(planCommit(input(committedOf(grace), grace)).deadline).toBeUndefined();
    expect(planCommit(input(committedOf(grace), phone)).deadline).toBeNull();
  });
});

describe('planCommit, properties (fast-check)', () => {
  const DEVICES = ['a', 'b', 'c'];
  const payments: UserEvent[] = [premium, failed, ev('plan_changed', { at: 4, tier: 'basic', subscriptionId: 's' }), ev('crisis_button', { at: 5 })];
  const stateArb = fc
    .tuple(fc.subarray(DEVICES), fc.subarray(payments))
    .map(([devices, events]) => after(...devices.map(register), ...events));

  it('a version never goes back or is reused for other content; targets and removals follow the devices', () => {
    fc.assert(
      fc.property(
        stateArb,
        stateArb,
        fc.integer({ min: 0, max: 6 }),
        fc.boolean(),
        fc.boolean(),
        // Per device, what a previous owner may have left: nothing above the record (0), or a view
        // 1–2 versions above it, showing the current content or the old.
        fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.boolean()), { minLength: 3, maxLength: 3 }),
        (before, now, viewVersion, safetyChanged, read, held) => {
          const committed = committedOf(before);
          const view = deriveView(now.snapshot);
          const safety = safetyChanged ? PLAN : EMPTY_SAFETY;
          // What the devices hold: the record's view at its version (known devices), or an orphan above it.
          const stored = read
            ? new Map<string, DeviceView | null>(
                DEVICES.map((d, i) => {
                  const [above, current] = held[i]!;
                  if (above === 0) {
                    const known = committed.devices.includes(d) && viewVersion > 0;
                    return [d, known ? deviceViewOf(USER, d, viewVersion, committed.view, EMPTY_SAFETY, LINES, 0) : null];
                  }
                  return [d, deviceViewOf(USER, d, viewVersion + above, current ? view : committed.view, current ? safety : EMPTY_SAFETY, LINES, 0)];
                }),
              )
            : null;
          const plan = planCommit(input(committed, now, { viewVersion, safety, stored }));
          const storedMax = Math.max(0, ...[...(stored?.values() ?? [])].map((v) => v?.version ?? 0));
          const floor = Math.max(viewVersion, storedMax);
          const devices = now.snapshot.context.devices;

          expect(plan.version).toBeGreaterThanOrEqual(floor);
          expect(plan.version).toBeLessThanOrEqual(floor + 1);
          expect(plan.record.viewVersion).toBe(plan.version);
          expect(plan.outbox.viewDevices.every((d) => devices.includes(d))).toBe(true);
          expect(plan.outbox.removed).toEqual(committed.devices.filter((d) => !devices.includes(d)));
          // Every device not sent the view already shows the current content under the plan's version.
          const current = (d: string) => deviceViewOf(USER, d, plan.version, view, safety, LINES, 0);
          for (const d of devices.filter((x) => !plan.outbox.viewDevices.includes(x))) {
            const known = committed.devices.includes(d);
            const holds = stored
              ? stored.get(d)?.version === plan.version && sameDeviceContent(stored.get(d)!, current(d))
              : known && plan.version === viewVersion && sameDeviceContent(deviceViewOf(USER, d, viewVersion, committed.view, EMPTY_SAFETY, LINES, 0), current(d));
            expect(holds, `device ${d} left without the current view`).toBe(true);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

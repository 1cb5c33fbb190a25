/**
 * The commit plan (`actors/commitPlan.ts`), pure: versions, whether the view goes out, orphaned
 * views left by a previous owner, the outbox to finish, the deadline. No server: the plan is data in,
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
import type { AuditRecord } from '../../transport/schemas.ts';
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
    stored: undefined,
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
  const viewOf = (state: UserState, version: number, safety = EMPTY_SAFETY) =>
    deviceViewOf(USER, state.snapshot.context.devices, version, deriveView(state.snapshot), safety, LINES, 99);

  it("a new user's first commit sends version 1, listing every device", () => {
    const state = after(register('phone'), register('web'));
    const plan = planCommit(input(committedOf(createUserState(USER, 0)), state, { viewVersion: 0 }));
    expect(plan.version).toBe(1);
    expect(plan.outbox.view).toBe(true);
    expect(plan.record).toMatchObject({ viewVersion: 1, lastSeq: { normal: 10, crisis: 0 }, outbox: plan.outbox });
  });

  it('a changed view goes out at version + 1, and its audit records name that version', () => {
    const next = after(register('phone'), premium, failed);
    const plan = planCommit(input(committedOf(phone), next, { audits: [audit('e1')] }));
    expect(plan.version).toBe(4);
    expect(plan.outbox).toEqual({ view: true, audits: [{ ...audit('e1'), viewVersion: 4 }] });
    expect(plan.record.state).toEqual(toPersisted(next));
  });

  it('an unchanged view keeps its version and the record has no outbox', () => {
    expect(planCommit(input(committedOf(phone), phone))).toMatchObject({ version: 3, outbox: { view: false } });
    expect(planCommit(input(committedOf(phone), phone)).record.outbox).toBeUndefined();
  });

  it('a registered or removed device changes the view: it lists the devices; a removed one is revoked', () => {
    const withWeb = after(register('phone'), premium, register('web'));
    expect(planCommit(input(committedOf(phone), withWeb))).toMatchObject({ version: 4, outbox: { view: true }, removedDevices: [] });
    const gone = after(register('phone'), premium, register('web'), ev('device_removed', { deviceId: 'phone', at: 4 }));
    expect(planCommit(input(committedOf(withWeb), gone))).toMatchObject({ version: 4, outbox: { view: true }, removedDevices: ['phone'] });
    expect(planCommit(input(committedOf(phone), phone)).removedDevices).toEqual([]);
  });

  it('safety content is compared by value: new contacts are a change, an equal copy is not', () => {
    const before = committedOf(phone, PLAN);
    expect(planCommit(input(before, phone, { safety: structuredClone(PLAN) })).version).toBe(3);
    expect(planCommit(input(before, phone, { safety: EMPTY_SAFETY })).version).toBe(4);
  });

  it('a stored view at a version the record does not know, with the current content: the version is adopted, nothing sent', () => {
    const next = after(register('phone'), premium, failed);
    const plan = planCommit(input(committedOf(phone), next, { stored: viewOf(next, 4) }));
    expect(plan).toMatchObject({ version: 4, orphaned: true, outbox: { view: false } });
  });

  it('a stored view at a version the record does not know, with other content: the current view goes above it', () => {
    const next = after(register('phone'), premium, failed);
    const plan = planCommit(input(committedOf(phone), next, { stored: viewOf(phone, 4) }));
    expect(plan).toMatchObject({ version: 5, orphaned: true, outbox: { view: true } });
  });

  it("the loaded record's output is finished first: with its view only while it is not stored", () => {
    const record = { ...planCommit(input(committedOf(phone), phone)).record, outbox: { view: true, audits: [audit('e0')] } };
    expect(planCommit(input(committedOf(phone), phone, { unfinished: record, stored: viewOf(phone, 2) })).resume).toEqual(record.outbox);
    expect(planCommit(input(committedOf(phone), phone, { unfinished: record, stored: viewOf(phone, 3) })).resume).toEqual({
      ...record.outbox,
      view: false,
    });
    // Without a redelivery in the batch the stored view is not read, and nothing is resumed.
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

  it('a version never goes back or is reused for other content; after the commit the stored view shows the current content', () => {
    fc.assert(
      fc.property(
        stateArb,
        stateArb,
        fc.integer({ min: 0, max: 6 }),
        fc.boolean(),
        fc.boolean(),
        // What a previous owner may have left: nothing above the record (0), or a view 1–2 versions
        // above it, showing the current content or the old.
        fc.tuple(fc.integer({ min: 0, max: 2 }), fc.boolean()),
        (before, now, viewVersion, safetyChanged, read, [above, current]) => {
          const committed = committedOf(before);
          const view = deriveView(now.snapshot);
          const safety = safetyChanged ? PLAN : EMPTY_SAFETY;
          const committedView = (version: number) => deviceViewOf(USER, committed.devices, version, committed.view, EMPTY_SAFETY, LINES, 0);
          const currentView = (version: number) => deviceViewOf(USER, now.snapshot.context.devices, version, view, safety, LINES, 0);
          // What the stream stores: the record's view at its version, or an orphan above it.
          const stored = !read
            ? undefined
            : above === 0
              ? viewVersion > 0
                ? committedView(viewVersion)
                : null
              : current
                ? currentView(viewVersion + above)
                : committedView(viewVersion + above);
          const plan = planCommit(input(committed, now, { viewVersion, safety, stored }));
          const floor = Math.max(viewVersion, stored?.version ?? 0);

          expect(plan.version).toBeGreaterThanOrEqual(floor);
          expect(plan.version).toBeLessThanOrEqual(floor + 1);
          expect(plan.record.viewVersion).toBe(plan.version);
          // Not sent: what is stored under the plan's version already shows the current content.
          if (!plan.outbox.view) {
            const held = stored !== undefined ? stored : viewVersion > 0 ? committedView(viewVersion) : null;
            expect(held?.version).toBe(plan.version);
            expect(sameDeviceContent(held!, currentView(plan.version)), 'the stored view is not the current one').toBe(true);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

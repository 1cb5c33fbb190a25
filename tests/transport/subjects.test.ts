import { describe, expect, it } from 'vitest';
import { AUTH_CALLOUT_SUBJECT, createSubjects, kickSubject, laneOf } from '../../transport/subjects.ts';

describe('subjects', () => {
  const s = createSubjects();

  it('puts crisis events on the crisis lane and the rest on the normal lane', () => {
    expect(s.event('u1', 'crisis_button')).toBe('fm.crisis.u1.crisis_button');
    expect(s.event('u1', 'crisis_resolved')).toBe('fm.crisis.u1.crisis_resolved');
    expect(s.event('u1', 'payment_failed')).toBe('fm.evt.u1.payment_failed');
    expect(laneOf('assessment_completed')).toBe('normal');
  });

  it('names the device revocations under control, and NATS’s own auth callout and kick subjects', () => {
    expect(s.deviceRevocation('u1')).toBe('fm.ctl.devices.u1');
    expect(createSubjects('st').deviceRevocation('*')).toBe('st.ctl.devices.*');
    expect(AUTH_CALLOUT_SUBJECT).toBe('$SYS.REQ.USER.AUTH');
    expect(kickSubject('NABC')).toBe('$SYS.REQ.SERVER.NABC.KICK');
  });

  it('parses what it builds, and nothing else', () => {
    expect(s.parseEvent(s.event('u-9', 'crisis_detected'))).toEqual({ lane: 'crisis', userId: 'u-9', type: 'crisis_detected' });
    expect(s.parseEvent('fm.view.u1.phone')).toBeUndefined();
    expect(s.parseEvent('other.evt.u1.payment_failed')).toBeUndefined();
    expect(s.parseEvent('fm.evt.u1')).toBeUndefined();
  });

  it('parses a lane subject as stored under its partition, and builds it', () => {
    const s = createSubjects();
    expect(s.stored('normal', 7, 'u1', 'plan_changed')).toBe('fm.evt.7.u1.plan_changed');
    expect(s.parseEvent('fm.evt.7.u1.plan_changed')).toEqual({ lane: 'normal', partition: 7, userId: 'u1', type: 'plan_changed' });
    expect(s.parseEvent('fm.crisis.63.u1.crisis_button')).toEqual({ lane: 'crisis', partition: 63, userId: 'u1', type: 'crisis_button' });
    expect(s.parseEvent('fm.evt.x.u1.plan_changed')).toBeUndefined();
    expect(s.partition('crisis', 3)).toBe('fm.crisis.3.>');
    expect(s.schedule('u1')).toBe('fm.sched.u1');
  });

  it('honours the prefix everywhere', () => {
    const t = createSubjects('stage');
    expect([t.view('u'), t.audit('u'), t.deadLetter('invalid'), t.alert('crisis_latency'), t.all.normal]).toEqual([
      'stage.view.u',
      'stage.audit.u',
      'stage.dlq.invalid',
      'stage.alert.crisis_latency',
      'stage.evt.*.*',
    ]);
  });
});

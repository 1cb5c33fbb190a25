/**
 * Unit: the lane scheduler (pure, no server). Crisis deliveries go at once and hold the normal
 * backlog back; a dispatch that releases its delivery at once (its partition is being left) drains
 * a long backlog in a loop, not by recursion.
 */
import { describe, expect, it } from 'vitest';
import { LaneScheduler, type Delivery } from '../../actors/laneScheduler.ts';
import { event } from '../support/events.ts';

function delivery(lane: Delivery['lane'], seq: number): Delivery {
  const e = lane === 'crisis' ? event(`u${seq}`, 'crisis_button', {}) : event(`u${seq}`, 'trial_ended', { at: 0 });
  return { lane, seq, event: e, redelivered: false, ack: () => {} };
}

describe('lane scheduler', () => {
  it('hands out normal deliveries only while no crisis delivery is in flight, up to the limit', () => {
    const dispatched: Delivery[] = [];
    const scheduler = new LaneScheduler({ limit: 2 }, (d) => dispatched.push(d));
    const crisis = delivery('crisis', 0);
    scheduler.submit(crisis);
    for (let i = 1; i <= 3; i++) scheduler.submit(delivery('normal', i));
    expect(dispatched.map((d) => d.seq)).toEqual([0]);
    scheduler.release(crisis);
    expect(dispatched.map((d) => d.seq)).toEqual([0, 1, 2]);
    scheduler.release(dispatched[1]!);
    expect(dispatched.map((d) => d.seq)).toEqual([0, 1, 2, 3]);
  });

  it('drains 200,000 waiting deliveries that each release at once without overflowing the stack', () => {
    let released = 0;
    const hold = delivery('crisis', 0);
    const scheduler: LaneScheduler = new LaneScheduler({ limit: 1 }, (d) => {
      if (d.lane === 'normal') {
        released++;
        scheduler.release(d);
      }
    });
    scheduler.submit(hold);
    for (let i = 1; i <= 200_000; i++) scheduler.submit(delivery('normal', i));
    expect(released).toBe(0);
    scheduler.release(hold);
    expect(released).toBe(200_000);
    expect(scheduler.normalInFlight).toBe(0);
  });
});

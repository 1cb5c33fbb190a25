/** Unit: a partition consumer's deliveries are taken only in stream order with nothing missing. */
import { describe, expect, it } from 'vitest';
import { DeliveryOrder } from '../../actors/deliveryOrder.ts';

describe('DeliveryOrder', () => {
  it('takes consecutive deliveries of later messages (stream gaps are other partitions)', () => {
    const order = new DeliveryOrder({ consumerSeq: 0, streamSeq: 4 });
    expect([order.accept(1, 5), order.accept(2, 9), order.accept(3, 10)]).toEqual([undefined, undefined, undefined]);
    expect(order.expected).toBe(4);
  });

  it('a delivery lost in flight: the next one skips a delivery sequence', () => {
    const order = new DeliveryOrder({ consumerSeq: 7, streamSeq: 20 });
    expect(order.accept(8, 21)).toBeUndefined();
    expect(order.accept(10, 23)).toEqual({ kind: 'missed', expected: 9, delivered: 10 });
  });

  it('a redelivery behind newer messages (a nak, an expired ack wait): an earlier stream sequence', () => {
    const order = new DeliveryOrder({ consumerSeq: 0, streamSeq: 0 });
    order.accept(1, 7);
    order.accept(2, 8);
    expect(order.accept(3, 7)).toEqual({ kind: 'redelivered', streamSeq: 7, after: 8 });
  });

  it('once broken, stays broken: nothing more of the session is taken', () => {
    const order = new DeliveryOrder({ consumerSeq: 0, streamSeq: 0 });
    const why = order.accept(2, 5);
    expect(why?.kind).toBe('missed');
    expect(order.accept(1, 4)).toBe(why);
  });
});

/**
 * Whether a partition consumer's deliveries are its lane's stream order with nothing missing.
 *
 * JetStream keeps a stream's order, not a consumer's delivery order across redeliveries: a delivery
 * lost in flight (a server died), an expired ack wait or a nak comes back later, behind newer
 * messages (nats-server issue 6114). A user must see its events in stream order, so a node takes a
 * partition lane's deliveries only while each is the consumer's next delivery (its delivery
 * sequence one more than the last: nothing was lost on the way) of a message later in the stream
 * than the last (no redelivery of an earlier one). At the first that is not, the node replays the
 * lane from its ack floor (`RuntimeNode.replay`), as nats.js's ordered consumer recreates itself.
 */

/** Where a consumer stood when the node started taking its deliveries. */
export interface DeliveryStart {
  /** The consumer's last delivery sequence (0 after a reset): the next delivery is one more. */
  consumerSeq: number;
  /** The last stream sequence delivered, or the ack floor after a reset: every next message is later. */
  streamSeq: number;
}

/** Why a delivery is not the lane's next. */
export type OrderBreak =
  | { kind: 'missed'; expected: number; delivered: number }
  | { kind: 'redelivered'; streamSeq: number; after: number };

/** Follows one consumer session's deliveries; once broken, stays broken (the session is replayed). */
export class DeliveryOrder {
  private nextDelivery: number;
  private lastStream: number;
  private broken: OrderBreak | undefined;

  constructor(start: DeliveryStart) {
    this.nextDelivery = start.consumerSeq + 1;
    this.lastStream = start.streamSeq;
  }

  /** Takes a delivery: `undefined` when it is the next in order (and is counted), else why not. */
  accept(deliverySeq: number, streamSeq: number): OrderBreak | undefined {
    if (this.broken) return this.broken;
    if (deliverySeq !== this.nextDelivery) return (this.broken = { kind: 'missed', expected: this.nextDelivery, delivered: deliverySeq });
    if (streamSeq <= this.lastStream) return (this.broken = { kind: 'redelivered', streamSeq, after: this.lastStream });
    this.nextDelivery++;
    this.lastStream = streamSeq;
    return undefined;
  }

  /** The next delivery sequence expected. */
  get expected(): number {
    return this.nextDelivery;
  }
}

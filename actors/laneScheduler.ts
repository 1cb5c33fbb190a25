/**
 * Crisis first, for the whole node: crisis deliveries go to their user at once; normal deliveries
 * wait in a FIFO backlog and are handed out only while no crisis delivery is in flight, fewer
 * normal ones are being worked on than the admission limit allows (learned from commit latency,
 * `admission.ts`), and the node admits the next one (its user is resident or can be: the cap on
 * resident users). So a saturated normal lane cannot fill
 * the event loop ahead of a crisis, and a crisis event overtakes normal events queued before it.
 */
import type { UserEvent } from '../machines/events.ts';
import type { Lane } from '../transport/subjects.ts';
import { Fifo } from './fifo.ts';

/** A decoded, valid event from a lane, waiting to be applied by its user. */
export interface Delivery {
  lane: Lane;
  /** Stream sequence in its lane: a user records the highest it applied, which decides redeliveries. */
  seq: number;
  event: UserEvent;
  /**
   * Delivered before, to this node or one that crashed: its effects may be partly published
   * (views out, record not saved), which the user must check before it publishes again.
   */
  redelivered: boolean;
  /**
   * Acknowledges the message: called only once its effects are durable. There is no nak: a message
   * given back would come again behind newer ones; it is left for a replay of its partition instead.
   */
  ack(): void;
}

/** Hands deliveries to users, crisis first. */
export class LaneScheduler {
  private readonly dispatch: (d: Delivery) => void;
  /**
   * Whether the normal delivery at the head of the backlog may be dispatched now (e.g. its user is
   * resident or there is room for it); when not, the backlog waits for {@link resume}.
   */
  private readonly admit: (d: Delivery) => boolean;
  private readonly admission: { readonly limit: number };
  private readonly backlog = new Fifo<Delivery>();
  private readonly working = new Set<Delivery>();
  private crisisWorking = 0;
  /** Whether {@link pump}'s loop is running: a dispatch that releases at once must not start another. */
  private pumping = false;

  constructor(admission: { readonly limit: number }, dispatch: (d: Delivery) => void, admit: (d: Delivery) => boolean = () => true) {
    this.admission = admission;
    this.dispatch = dispatch;
    this.admit = admit;
  }

  /** Takes a delivery from a consumer. */
  submit(d: Delivery): void {
    if (d.lane === 'crisis') {
      this.crisisWorking++;
      this.working.add(d);
      this.dispatch(d);
    } else {
      this.backlog.push(d);
      this.pump();
    }
  }

  /** The delivery needs no more work now (committed, or parked in a coalescing window). Idempotent. */
  release(d: Delivery): void {
    if (!this.working.delete(d)) return;
    if (d.lane === 'crisis') this.crisisWorking--;
    this.pump();
  }

  /** Takes the waiting normal deliveries `which` selects out of the backlog (their partition is handed over). */
  drop(which: (d: Delivery) => boolean): Delivery[] {
    return this.backlog.remove(which);
  }

  /** Normal deliveries being worked on now. */
  get normalInFlight(): number {
    return this.working.size - this.crisisWorking;
  }

  /** Hands out waiting normal deliveries again after something `admit` depends on changed. */
  resume(): void {
    this.pump();
  }

  private pump(): void {
    // A dispatch may release its delivery at once (its partition is being left), which pumps again:
    // the running loop goes on instead, or a long backlog would recurse until the stack overflows.
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.crisisWorking === 0 && this.normalInFlight < this.admission.limit && this.backlog.length > 0) {
        const d = this.backlog.peek()!;
        if (!this.admit(d)) break;
        this.backlog.shift();
        this.working.add(d);
        this.dispatch(d);
      }
    } finally {
      this.pumping = false;
    }
  }
}

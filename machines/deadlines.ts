/**
 * The deadline a user's state is waiting for. The runtime keeps it as a server-side schedule that
 * publishes the deadline event onto the user's normal lane when it passes, so a passivated or
 * restarted user still lapses on time and the deadline is part of the user's event history like any
 * other input.
 */
import { subscriptionStateOf } from './deviceView.ts';
import type { EventOf } from './events.ts';
import type { UserSnapshot } from './userMachine.ts';

/** A pending deadline: the event to raise and when. */
export interface Deadline {
  type: 'trial_ended' | 'grace_ended';
  at: number;
}

/** The deadline this snapshot waits for, or `null`. */
export function pendingDeadline(snapshot: UserSnapshot): Deadline | null {
  const { context } = snapshot;
  switch (subscriptionStateOf(snapshot)) {
    case 'trial':
      return context.trialEndsAt === null ? null : { type: 'trial_ended', at: context.trialEndsAt };
    case 'grace_period':
      return context.graceEndsAt === null ? null : { type: 'grace_ended', at: context.graceEndsAt };
    default:
      return null;
  }
}

/**
 * The event a passed deadline raises. Its id is derived from user, type and time, so however often
 * it is raised it is applied once; its `at` is the deadline itself,
 * so the statechart's guard sees the deadline as passed whenever the event is applied.
 */
export function deadlineEvent(userId: string, deadline: Deadline): EventOf<'trial_ended' | 'grace_ended'> {
  return { type: deadline.type, id: `${deadline.type}:${userId}:${deadline.at}`, userId, at: deadline.at };
}

/** Whether two pending deadlines are the same. */
export function deadlinesEqual(a: Deadline | null, b: Deadline | null): boolean {
  return a === b || (a !== null && b !== null && a.type === b.type && a.at === b.at);
}

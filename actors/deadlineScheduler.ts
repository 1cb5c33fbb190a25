/**
 * Durable deadlines (trial end, grace end). Each user's pending deadline is kept in a KV bucket
 * (`userId` → deadline), which every node watches; this node raises the deadlines of users it owns
 * when they pass, by publishing the deadline event onto the normal lane. So a deadline fires whether
 * the user is resident, passivated, or its node restarted meanwhile (DESIGN §3).
 */
import type { KV } from '@nats-io/kv';
import TinyQueue from 'tinyqueue';
import { deadlineEvent, deadlinesEqual, type Deadline } from '../machines/deadlines.ts';
import { isTransient } from '../transport/errors.ts';
import type { Logger } from './logger.ts';
import type { Publisher } from './publisher.ts';

/** Delay before raising a deadline again after its publish failed (NATS away). */
const RETRY_MS = 1_000;
/** Longest single timer: setTimeout overflows past 2^31 ms, and a trial is 14 days away. */
const MAX_TIMER_MS = 60 * 60 * 1000;

/** A queued timer: when to fire, and which deadline of the user it is for. */
interface Entry {
  fireAt: number;
  userId: string;
  deadlineAt: number;
}

/** Keeps every pending deadline and raises the owned ones when they pass. */
export class DeadlineScheduler {
  private readonly kv: KV;
  private readonly publisher: Publisher;
  private readonly owns: (userId: string) => boolean;
  private readonly log: Logger;
  /** The one deadline per user that counts; queue entries that disagree with it are stale. */
  private readonly pending = new Map<string, Deadline>();
  private readonly queue = new TinyQueue<Entry>([], (a, b) => a.fireAt - b.fireAt);
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private watching: Promise<void> | undefined;
  private stopWatch: (() => void) | undefined;

  constructor(kv: KV, publisher: Publisher, owns: (userId: string) => boolean, log: Logger) {
    this.kv = kv;
    this.publisher = publisher;
    this.owns = owns;
    this.log = log;
  }

  /** Loads the stored deadlines and follows changes made by any node. */
  async start(): Promise<void> {
    const watcher = await this.kv.watch();
    this.stopWatch = () => watcher.stop();
    this.watching = (async () => {
      for await (const entry of watcher) {
        if (entry.operation === 'PUT') this.track(entry.key, JSON.parse(entry.string()) as Deadline);
        else this.track(entry.key, null);
      }
    })();
  }

  /**
   * Records a user's new pending deadline (`null`: none), written through `kv`: a handle on the
   * writer's own connection (the crisis lane's commits write over theirs). Durable when the
   * promise resolves; a deadline already recorded is not written again.
   */
  async set(userId: string, deadline: Deadline | null, kv: KV = this.kv): Promise<void> {
    if (deadlinesEqual(this.pending.get(userId) ?? null, deadline)) return;
    if (deadline) await kv.put(userId, JSON.stringify(deadline));
    else await kv.delete(userId);
    this.track(userId, deadline);
  }

  /** Stops timers and the watch. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stopWatch?.();
    await this.watching;
  }

  private track(userId: string, deadline: Deadline | null): void {
    if (deadlinesEqual(this.pending.get(userId) ?? null, deadline)) return;
    if (!deadline) {
      this.pending.delete(userId);
      return;
    }
    this.pending.set(userId, deadline);
    this.queue.push({ fireAt: deadline.at, userId, deadlineAt: deadline.at });
    if (this.queue.peek()!.userId === userId) this.arm();
  }

  private arm(): void {
    clearTimeout(this.timer);
    const next = this.queue.peek();
    if (this.stopped || !next) return;
    const delay = Math.min(Math.max(0, next.fireAt - Date.now()), MAX_TIMER_MS);
    this.timer = setTimeout(() => void this.fire(), delay);
  }

  private async fire(): Promise<void> {
    const now = Date.now();
    const due: Array<[string, Deadline]> = [];
    while (this.queue.length && this.queue.peek()!.fireAt <= now) {
      const { userId, deadlineAt } = this.queue.pop()!;
      const deadline = this.pending.get(userId);
      if (deadline?.at === deadlineAt && this.owns(userId)) due.push([userId, deadline]);
    }
    await Promise.all(
      due.map(async ([userId, deadline]) => {
        try {
          await this.publisher.deadlineEvent(deadlineEvent(userId, deadline));
        } catch (err) {
          const fields = { userId, type: deadline.type, err: (err as Error).message };
          // A terminal failure would fail alike every second: the deadline stays in the index and
          // is raised again when a node next loads it (a restart, or the user's next activation).
          if (!isTransient(err)) return this.log.error(fields, 'deadline not raised');
          this.log.warn(fields, 'deadline publish failed; retrying');
          this.queue.push({ fireAt: Date.now() + RETRY_MS, userId, deadlineAt: deadline.at });
        }
      }),
    );
    this.arm();
  }
}

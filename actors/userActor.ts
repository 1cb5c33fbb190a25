/**
 * A user actor: one user's statechart in memory, its two-lane mailbox (crisis first), and the
 * commit that makes its work durable. Events are applied one at a time; a commit publishes the new
 * view to every device (version +1, only when it changed), appends audit records, writes the record
 * fenced by its KV revision, updates the deadline index and only then acknowledges the messages.
 * A crash anywhere before the acknowledgement means redelivery, and redelivery is idempotent.
 */
import { deadlinesEqual, pendingDeadline } from '../machines/deadlines.ts';
import { coalesceDelay, compressView, isDowngrade } from '../machines/delivery.ts';
import { deriveView, inCrisis, subscriptionStateOf, type UserView } from '../machines/deviceView.ts';
import type { UserEvent } from '../machines/events.ts';
import { applySafetyEvent, EMPTY_SAFETY, type SafetyContent } from '../machines/safety.ts';
import type { UserMachine, UserSnapshot } from '../machines/userMachine.ts';
import { applyEvent, createUserState, fromPersisted, toPersisted, type UserState } from '../machines/userState.ts';
import type { AuditRecord, DeviceView } from '../transport/schemas.ts';
import type { Lane } from '../transport/subjects.ts';
import { sameDeviceContent } from '../transport/viewWire.ts';
import type { RuntimeConfig } from './config.ts';
import type { DeadlineScheduler } from './deadlineScheduler.ts';
import type { Delivery } from './laneScheduler.ts';
import { RuntimeMetrics } from './metrics.ts';
import type { Publisher } from './publisher.ts';
import { retry, type RetryHost } from './retry.ts';
import { FencedError, type Outbox, type UserRecord, type UserStore } from './userStore.ts';

/** What a user actor needs from its node (its `signal` ends the actor's retries when the node stops). */
export interface ActorHost extends RetryHost {
  readonly machine: UserMachine;
  readonly config: RuntimeConfig;
  readonly store: UserStore;
  readonly publisher: Publisher;
  /** Publishes on the crisis lane's own connection, so crisis views never queue behind normal output. */
  readonly crisisPublisher: Publisher;
  readonly deadlines: DeadlineScheduler;
  /** Stores a dead letter for a valid event the runtime cannot take; resolves once stored, rejects when the node stops. */
  deadLetterEvent(event: UserEvent, detail: string): Promise<void>;
  /** The delivery needs no more of the node's attention. */
  release(d: Delivery): void;
  /** The actor stopped (fenced, or could not load): the node forgets it. */
  evict(actor: UserActor): void;
  /** The actor has nothing queued, uncommitted or running: it may be passivated now. */
  settled(actor: UserActor): void;
}

/** What the devices were last told (for a new user: its initial state, before any view went out). */
interface Committed {
  snapshot: UserSnapshot;
  safety: SafetyContent;
  devices: readonly string[];
}

const NO_SEQ: Record<Lane, number> = { normal: 0, crisis: 0 };

/** One user, resident on this node. */
export class UserActor {
  readonly userId: string;
  /** Last time a delivery arrived or work finished (ms since epoch): for passivation. */
  lastActive = Date.now();

  private readonly host: ActorHost;
  private status: 'new' | 'ready' | 'stopped' = 'new';
  private state!: UserState;
  private safety: SafetyContent = EMPTY_SAFETY;
  private viewVersion = 0;
  private lastSeq: Record<Lane, number> = { ...NO_SEQ };
  private revision = 0;
  private committed!: Committed;
  /** The record loaded at activation, until the first commit: its outbox may be unpublished. */
  private unfinished: UserRecord | null = null;
  private readonly crisisQueue: Delivery[] = [];
  private readonly normalQueue: Delivery[] = [];
  /** Delivered since the last commit, acknowledged by the next one. */
  private batch: Delivery[] = [];
  private audits: AuditRecord[] = [];
  /** Dead letters of this batch, stored before its messages are acknowledged. */
  private rejections: Promise<void>[] = [];
  private running = false;
  private parked: NodeJS.Timeout | undefined;
  private commitDue = false;
  /** Aborted by stop(): retries still under way (a view publish beside a fenced save) give up, never land later. */
  private readonly cancel = new AbortController();

  constructor(userId: string, host: ActorHost) {
    this.userId = userId;
    this.host = host;
  }

  /** Queues a delivery and starts working if idle. */
  enqueue(d: Delivery): void {
    (d.lane === 'crisis' ? this.crisisQueue : this.normalQueue).push(d);
    this.lastActive = Date.now();
    this.kick();
  }

  /** Nothing queued, nothing uncommitted, nothing running: safe to passivate. */
  get idle(): boolean {
    return !this.running && this.batch.length === 0 && this.crisisQueue.length === 0 && this.normalQueue.length === 0;
  }

  private kick(): void {
    if (!this.running && this.status !== 'stopped') void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      if (this.status === 'new') await this.activate();
      for (;;) {
        const d = this.crisisQueue.shift() ?? this.normalQueue.shift();
        if (d) {
          this.apply(d);
          if (d.lane === 'crisis' || this.batch.length >= this.host.config.maxBatch) await this.commit();
          continue;
        }
        if (this.batch.length === 0) break;
        const delay = this.commitDue ? 0 : this.coalesceDelay();
        if (delay === 0) {
          await this.commit();
          continue;
        }
        this.park(delay);
        break;
      }
    } catch (err) {
      this.stop(err as Error);
    } finally {
      this.running = false;
      this.lastActive = Date.now();
      if (this.idle) this.host.settled(this);
    }
  }

  private async activate(): Promise<void> {
    const started = performance.now();
    const { record, revision } = await retry('load user record', () => this.host.store.load(this.userId), this.host, this.cancel.signal);
    const { machine } = this.host;
    if (record) {
      this.state = fromPersisted(record.state, machine);
      this.safety = record.safety;
      this.viewVersion = record.viewVersion;
      this.lastSeq = record.lastSeq;
      this.unfinished = record.outbox ? record : null;
    } else {
      const first = this.crisisQueue[0] ?? this.normalQueue[0];
      this.state = createUserState(this.userId, first?.event.at ?? Date.now(), machine);
    }
    this.committed = { snapshot: this.state.snapshot, safety: this.safety, devices: [...this.state.snapshot.context.devices] };
    this.revision = revision;
    this.status = 'ready';
    // Re-arm the user's deadline; one that passed while the user was passive fires now.
    await retry('set deadline', () => this.host.deadlines.set(this.userId, pendingDeadline(this.state.snapshot)), this.host, this.cancel.signal);
    this.host.metrics.activations++;
    RuntimeMetrics.record(this.host.metrics.activationLatency, performance.now() - started);
  }

  private apply(d: Delivery): void {
    const { metrics } = this.host;
    this.batch.push(d);
    if (d.seq <= this.lastSeq[d.lane]) {
      metrics.duplicates++;
      return;
    }
    this.lastSeq[d.lane] = d.seq;
    const before = this.state.snapshot;
    let result: ReturnType<typeof applyEvent>;
    try {
      result = applyEvent(this.state, d.event, this.host.machine);
    } catch (err) {
      // A valid event the statechart cannot take: kept as a dead letter, never a stuck user.
      this.rejections.push(this.host.deadLetterEvent(d.event, (err as Error).message));
      return;
    }
    const { state, outcome } = result;
    if (outcome !== 'applied') {
      metrics[outcome === 'duplicate' ? 'duplicates' : 'stale']++;
      return;
    }
    metrics.events++;
    this.state = state;
    this.safety = applySafetyEvent(this.safety, d.event);
    const after = state.snapshot;
    const levelBefore = before.context.crisis?.level ?? null;
    const levelAfter = after.context.crisis?.level ?? null;
    if (!inCrisis(before) && inCrisis(after)) metrics.crises++;
    if (JSON.stringify(before.value) !== JSON.stringify(after.value) || levelBefore !== levelAfter) {
      this.audits.push({
        userId: this.userId,
        eventId: d.event.id,
        eventType: d.event.type,
        at: d.event.at,
        recordedAt: Date.now(),
        from: regions(before),
        to: regions(after),
        crisisLevel: levelAfter,
        viewVersion: null,
      });
    }
  }

  private coalesceDelay(): number {
    // A new user's first view goes at once: its devices have nothing yet.
    if (this.viewVersion === 0) return 0;
    const prev = deriveView(this.committed.snapshot);
    return coalesceDelay(prev, deriveView(this.state.snapshot), this.host.config.delivery);
  }

  /** Holds the batch for a coalescing window; a crisis or a full batch ends the wait early. */
  private park(delay: number): void {
    for (const d of this.batch) this.host.release(d);
    if (this.parked) return;
    this.parked = setTimeout(() => {
      this.parked = undefined;
      this.commitDue = true;
      this.kick();
    }, delay);
  }

  private async commit(): Promise<void> {
    clearTimeout(this.parked);
    this.parked = undefined;
    this.commitDue = false;
    const { store, deadlines, metrics } = this.host;
    const batch = this.batch;
    const audits = this.audits;
    const rejections = this.rejections;
    // Left in place until durable: if this commit throws, stop() returns them for redelivery.

    const snapshot = this.state.snapshot;
    const next = deriveView(snapshot);
    const prev = deriveView(this.committed.snapshot);
    const devices = snapshot.context.devices;
    const known = this.committed.devices;
    const crisis = next.crisis.active || batch.some((d) => d.lane === 'crisis');
    const publisher = crisis ? this.host.crisisPublisher : this.host.publisher;
    // A previous owner that crashed or was fenced between publishing views and saving the record
    // left devices holding a version the record does not know. Never reuse it: a device holding it
    // would skip different content under it as not newer. If the devices already show the current
    // view, keep their version; otherwise send the current view to all of them above it. Only a
    // batch holding a redelivery can follow such a crash, so only those pay for the check.
    let reissue = false;
    let adopted = false;
    if (batch.some((d) => d.redelivered)) {
      const checked = [...new Set([...known, ...devices])];
      const stored = await retry('read last views', () => publisher.lastViews(this.userId, checked), this.host, this.cancel.signal);
      const sent = Math.max(0, ...stored.map((v) => v?.version ?? 0));
      // The loaded record's own output may not have landed either: finish it (views only if the
      // devices do not hold them yet; audit records are deduplicated by id).
      await this.resumeOutbox(publisher, sent < this.viewVersion);
      if (sent > this.viewVersion) {
        metrics.orphanedViews++;
        this.viewVersion = sent;
        adopted = devices.every((d) => {
          const view = stored[checked.indexOf(d)];
          return view?.version === sent && sameDeviceContent(view, this.deviceView(d, next));
        });
        reissue = !adopted;
      }
    }
    const changed =
      reissue || (!adopted && (this.viewVersion === 0 || this.safety !== this.committed.safety || JSON.stringify(prev) !== JSON.stringify(next)));
    const removed = known.filter((d) => !devices.includes(d));
    if (changed) this.viewVersion++;
    const targets = changed ? devices : devices.filter((d) => !known.includes(d));
    for (const a of audits) a.viewVersion = changed ? this.viewVersion : null;

    const record: UserRecord = {
      state: toPersisted(this.state),
      safety: this.safety,
      viewVersion: this.viewVersion,
      lastSeq: { ...this.lastSeq },
    };
    const output: Outbox = { viewDevices: targets, audits, removed };
    if (targets.length || audits.length || removed.length) record.outbox = output;
    // The output and the record go out together (one round trip instead of two): the outbox in the
    // record lets the next owner finish a commit that died between the two (see `resumeOutbox`).
    const [, revision] = await Promise.all([
      retry('publish output', () => this.publish(publisher, output, next, this.viewVersion, this.safety), this.host, this.cancel.signal),
      retry('save user record', () => store.save(this.userId, record, this.revision), this.host, this.cancel.signal),
    ]);
    this.revision = revision;
    this.unfinished = null;
    metrics.viewsPublished += targets.length;
    this.observeLatency(batch, prev, next);

    const deadline = pendingDeadline(snapshot);
    if (!deadlinesEqual(pendingDeadline(this.committed.snapshot), deadline)) {
      await retry('set deadline', () => deadlines.set(this.userId, deadline), this.host, this.cancel.signal);
    }
    this.committed = { snapshot, safety: this.safety, devices: [...devices] };
    await Promise.all(rejections);
    this.batch = [];
    this.audits = [];
    this.rejections = [];
    for (const d of batch) {
      d.ack();
      this.host.release(d);
    }
    metrics.commits++;
  }

  /** Publishes a commit's output: the view to `viewDevices`, audit records, purges. */
  private async publish(publisher: Publisher, out: Outbox, view: UserView, version: number, safety: SafetyContent): Promise<void> {
    const views = out.viewDevices.map((deviceId) => this.deviceView(deviceId, view, version, safety));
    await Promise.all([
      publisher.views(views, compressView(view, this.host.config.delivery)),
      publisher.purgeViews(this.userId, out.removed),
      publisher.audit(out.audits),
    ]);
  }

  /**
   * Publishes again what the commit that saved the loaded record published: the node that saved it
   * may have died before its output was stored. Idempotent (same view version, audit ids deduped).
   */
  private async resumeOutbox(publisher: Publisher, withViews: boolean): Promise<void> {
    const record = this.unfinished;
    if (!record?.outbox) return;
    this.unfinished = null;
    const out = withViews ? record.outbox : { ...record.outbox, viewDevices: [] };
    const view = deriveView(fromPersisted(record.state, this.host.machine).snapshot);
    await retry('publish output', () => this.publish(publisher, out, view, record.viewVersion, record.safety), this.host, this.cancel.signal);
  }

  private deviceView(deviceId: string, view: UserView, version = this.viewVersion, safety = this.safety): DeviceView {
    return {
      userId: this.userId,
      deviceId,
      version,
      issuedAt: Date.now(),
      ...view,
      crisisLines: this.host.config.crisisLines,
      safety,
    };
  }

  /** Times crisis and therapeutic-access changes against the seed's budgets; alerts on overruns. */
  private observeLatency(batch: Delivery[], prev: UserView, next: UserView): void {
    const { metrics, config } = this.host;
    const now = Date.now();
    for (const d of batch) RuntimeMetrics.record(metrics.eventLatency, now - d.event.at);
    const crisis = batch.filter((d) => d.lane === 'crisis');
    for (const d of crisis) {
      RuntimeMetrics.record(metrics.crisisLatency, now - d.event.at);
      this.checkBudget('crisis_latency', d, now - d.event.at, config.crisisBudgetMs);
    }
    // The access change comes from the normal lane (payments, deadlines); time its latest event.
    const last = batch.findLast((d) => d.lane === 'normal');
    if (last && isDowngrade(prev, next)) {
      RuntimeMetrics.record(metrics.therapeuticLatency, now - last.event.at);
      this.checkBudget('therapeutic_latency', last, now - last.event.at, config.therapeuticBudgetMs);
    }
  }

  private checkBudget(kind: 'crisis_latency' | 'therapeutic_latency', d: Delivery, latencyMs: number, budgetMs: number): void {
    if (latencyMs <= budgetMs) return;
    const { metrics, log, publisher } = this.host;
    metrics.alerts++;
    log.warn({ userId: this.userId, eventId: d.event.id, kind, latencyMs, budgetMs }, 'seed budget exceeded');
    publisher
      .alert({ kind, userId: this.userId, eventId: d.event.id, latencyMs, budgetMs, at: Date.now() })
      .catch((err: Error) => log.error({ err: err.message, kind }, 'alert publish failed'));
  }

  /**
   * Stops after a fence, the node's stop or a terminal error. After a fence or the node's stop,
   * everything not yet durable goes back for redelivery (to the new owner, or the next run). A
   * terminal error would fail the same way on every redelivery: those events become dead letters.
   */
  private stop(err: Error): void {
    this.status = 'stopped';
    this.cancel.abort(err);
    clearTimeout(this.parked);
    const { metrics, log } = this.host;
    const redeliver = err instanceof FencedError || this.host.signal.aborted;
    if (err instanceof FencedError) metrics.fenced++;
    log[redeliver ? 'warn' : 'error']({ userId: this.userId, err: err.message }, 'user actor stopped');
    for (const d of [...this.batch, ...this.crisisQueue, ...this.normalQueue]) {
      if (redeliver) d.nak();
      else this.host.deadLetterEvent(d.event, `not committed: ${err.message}`).then(() => d.ack(), () => d.nak());
      this.host.release(d);
    }
    this.batch = [];
    this.crisisQueue.length = 0;
    this.normalQueue.length = 0;
    this.host.evict(this);
  }
}

function regions(snapshot: UserSnapshot): AuditRecord['from'] {
  return { subscription: subscriptionStateOf(snapshot), crisis: inCrisis(snapshot) ? 'active' : 'stable' };
}

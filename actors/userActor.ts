/**
 * A user actor: one user's statechart in memory, its two-lane mailbox (crisis first), and the
 * commit that makes its work durable. Events are applied one at a time; a commit (planned by the
 * pure `planCommit`) writes the record fenced by its KV revision, then publishes the user's new
 * view (version +1, only when it changed; stored once, fanned out to the connected devices),
 * appends audit records and sets the deadline's schedule, and only then acknowledges the messages.
 * A crash anywhere before the acknowledgement means redelivery, and redelivery is idempotent.
 */
import { coalesceDelay, compressView, isDowngrade } from '../machines/delivery.ts';
import { deriveView, inCrisis, subscriptionStateOf, type UserView } from '../machines/deviceView.ts';
import type { UserEvent } from '../machines/events.ts';
import { applySafetyEvent, EMPTY_SAFETY, type SafetyContent } from '../machines/safety.ts';
import type { UserMachine, UserSnapshot } from '../machines/userMachine.ts';
import { applyEvent, createUserState, fromPersisted, toPersisted, type UserState } from '../machines/userState.ts';
import { isWrongLastSequence } from '../transport/errors.ts';
import type { AuditRecord, DeviceView } from '../transport/schemas.ts';
import type { Lane } from '../transport/subjects.ts';
import { deviceViewOf, planCommit, type Committed } from './commitPlan.ts';
import type { RuntimeConfig } from './config.ts';
import type { Delivery } from './laneScheduler.ts';
import { RuntimeMetrics } from './metrics.ts';
import type { Publisher } from './publisher.ts';
import { retry, type RetryHost } from './retry.ts';
import { freezeUserRecord, thawUserRecord, type Outbox, type UserRecord } from './userRecord.ts';
import { FencedError, type UserStore } from './userStore.ts';

/**
 * One lane's output, on that lane's own connection: a crisis commit's reads and writes (views,
 * audit, purges, the record, the deadline's schedule) never queue behind normal-lane output.
 */
export interface LaneOutput {
  readonly publisher: Publisher;
  readonly store: UserStore;
}

/** What a user actor needs from its node (its `signal` ends the actor's retries when the node stops). */
export interface ActorHost extends RetryHost {
  readonly machine: UserMachine;
  readonly config: RuntimeConfig;
  /** The output handles of a lane. */
  output(lane: Lane): LaneOutput;
  /** Stores a dead letter for a valid event the runtime cannot take; resolves once stored, rejects when the node stops. */
  deadLetterEvent(event: UserEvent, detail: string): Promise<void>;
  /** The delivery needs no more of the node's attention. */
  release(d: Delivery): void;
  /** A commit on `lane`'s output took this long (its writes, from the record's save to the last stored output): admission learns from it. */
  committed(lane: Lane, latencyMs: number): void;
  /** The user's stored view no longer lists these devices: the auth callout closes their connections and revokes their tokens. */
  devicesRemoved(userId: string, deviceIds: readonly string[]): void;
  /** The actor stopped (fenced, or could not load): the node forgets it. */
  evict(actor: UserActor): void;
  /** A commit of this user was fenced: another owner wrote its record. What the actor held comes again in order. */
  fenced(userId: string): void;
  /** The actor has nothing queued, uncommitted or running: it may be passivated now. */
  settled(actor: UserActor): void;
}

const NO_SEQ: Record<Lane, number> = { normal: 0, crisis: 0 };

/** What an actor is working on: made with its first delivery, dropped once all of it is durable. */
interface Work {
  crisis: Delivery[];
  normal: Delivery[];
  /** Delivered since the last commit, acknowledged by the next one. */
  batch: Delivery[];
  audits: AuditRecord[];
  /** Dead letters of this batch, stored before its messages are acknowledged. */
  rejections: Promise<void>[];
}

/** What a view shows: entitlements, safety content and the devices it lists. */
type Shown = Omit<Committed, 'snapshot'>;

/** One user, resident on this node. */
export class UserActor {
  readonly userId: string;
  /** Last time a delivery arrived or work finished (ms since epoch): for passivation. */
  lastActive = Date.now();

  private readonly host: ActorHost;
  /**
   * `ready`: the user is in memory as its state; `frozen`: as its record's bytes only (idle, see
   * {@link freeze}); `new`: not loaded yet.
   */
  private status: 'new' | 'ready' | 'frozen' | 'stopped' = 'new';
  /** The user's state while `ready`. */
  private state: UserState | undefined;
  private safety: SafetyContent = EMPTY_SAFETY;
  private viewVersion = 0;
  /** Sequence of the user's stored view in the views stream, as the actor last knew it; unknown since activation. */
  private viewSeq: number | undefined;
  private lastSeq: Record<Lane, number> = NO_SEQ;
  private revision = 0;
  /** What the devices were last told, without its view (derived once per commit, not kept); while `ready`. */
  private committed: Omit<Committed, 'view'> | undefined;
  /** While `frozen`: the user's record, compact (`freezeUserRecord`). */
  private frozen: string | undefined;
  /** The record loaded at activation, until the first commit: its outbox may be unpublished. */
  private unfinished: UserRecord | null = null;
  private work: Work | undefined;
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
    this.work ??= { crisis: [], normal: [], batch: [], audits: [], rejections: [] };
    this.work[d.lane].push(d);
    this.lastActive = Date.now();
    this.kick();
  }

  /**
   * Keeps an idle user as its record only, deflated (about 80 bytes for a simple user) instead of
   * the statechart's snapshot, ledger and view state, some 2 KB; the next delivery rebuilds them
   * without a read from the store.
   * Only with nothing under way and the last commit complete.
   */
  freeze(): void {
    if (this.status !== 'ready' || !this.idle || this.parked || this.unfinished) return;
    const record: UserRecord = { state: toPersisted(this.state!), safety: this.safety, viewVersion: this.viewVersion, lastSeq: this.lastSeq };
    this.frozen = freezeUserRecord(record);
    this.state = undefined;
    this.committed = undefined;
    this.safety = EMPTY_SAFETY;
    this.status = 'frozen';
    this.host.metrics.freezes++;
  }

  /**
   * The user's partition (these of its lanes) is being handed over or replayed: what it has not
   * started of them goes back to the lane, and what it applied is committed now instead of after a
   * coalescing window.
   */
  surrender(lanes: ReadonlySet<Lane>): void {
    const work = this.work;
    if (work) {
      // Left unacknowledged: the next session's reset to the ack floor delivers them again, in order.
      for (const lane of lanes) {
        for (const d of work[lane]) this.host.release(d);
        work[lane] = [];
      }
    }
    if (this.parked) {
      clearTimeout(this.parked);
      this.parked = undefined;
      this.commitDue = true;
      this.kick();
    }
  }

  /** Nothing queued, nothing uncommitted, nothing running: safe to passivate. */
  get idle(): boolean {
    const work = this.work;
    return !this.running && (!work || (work.batch.length === 0 && work.crisis.length === 0 && work.normal.length === 0));
  }

  private kick(): void {
    if (!this.running && this.status !== 'stopped') void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      if (this.status === 'new') await this.activate();
      if (this.status === 'frozen') this.thaw();
      const work = this.work!;
      for (;;) {
        const d = work.crisis.shift() ?? work.normal.shift();
        if (d) {
          this.apply(work, d);
          if (d.lane === 'crisis' || work.batch.length >= this.host.config.maxBatch) await this.commit(work, this.views());
          continue;
        }
        if (work.batch.length === 0) break;
        const views = this.views();
        // A new user's first view goes at once: its devices have nothing yet.
        const wait = this.commitDue || this.viewVersion === 0 ? 0 : coalesceDelay(views.committed.view, views.view, this.host.config.delivery);
        if (wait === 0) {
          await this.commit(work, views);
          continue;
        }
        this.park(work, wait);
        break;
      }
    } catch (err) {
      this.stop(err as Error);
    } finally {
      this.running = false;
      this.lastActive = Date.now();
      if (this.idle) {
        this.work = undefined;
        this.host.settled(this);
      }
    }
  }

  private async activate(): Promise<void> {
    const started = performance.now();
    const first = this.work?.crisis[0] ?? this.work?.normal[0];
    const output = this.host.output(first?.lane ?? 'normal');
    const { record, revision } = await this.retry('load user record', () => output.store.load(this.userId));
    this.revision = revision;
    if (record) this.restore(record);
    else this.begin(createUserState(this.userId, first?.event.at ?? Date.now(), this.host.machine));
    this.host.metrics.activations++;
    RuntimeMetrics.record(this.host.metrics.activationLatency, performance.now() - started);
  }

  /** Back from {@link freeze}: the record it kept, at the revision the actor holds. */
  private thaw(): void {
    const record = thawUserRecord(this.frozen!);
    this.frozen = undefined;
    this.restore(record);
    this.host.metrics.thaws++;
  }

  private restore(record: UserRecord): void {
    this.safety = record.safety;
    this.viewVersion = record.viewVersion;
    this.lastSeq = record.lastSeq;
    this.unfinished = record.outbox ? record : null;
    this.begin(fromPersisted(record.state, this.host.machine));
  }

  /** The user is in memory as `state`, and that is what its devices were last told. */
  private begin(state: UserState): void {
    this.state = state;
    this.committed = { snapshot: state.snapshot, safety: this.safety, devices: state.snapshot.context.devices };
    this.status = 'ready';
  }

  private apply(work: Work, d: Delivery): void {
    const { metrics } = this.host;
    work.batch.push(d);
    // Deliveries come in stream order (partitionConsumer.ts), so its sequence decides exactly whether
    // the user applied it: a delivery at or below the last applied one is a redelivery (a replay, or
    // a crash before the acknowledgement). Event ids only catch the same event published again.
    if (d.seq <= this.lastSeq[d.lane]) {
      metrics.duplicates++;
      return;
    }
    this.lastSeq = { ...this.lastSeq, [d.lane]: d.seq };
    const before = this.state!.snapshot;
    let result: ReturnType<typeof applyEvent>;
    try {
      result = applyEvent(this.state!, d.event, this.host.machine);
    } catch (err) {
      // A valid event the statechart cannot take: kept as a dead letter, never a stuck user.
      work.rejections.push(this.host.deadLetterEvent(d.event, (err as Error).message));
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
      work.audits.push({
        userId: this.userId,
        eventId: d.event.id,
        eventType: d.event.type,
        at: d.event.at,
        recordedAt: Date.now(),
        from: regions(before),
        to: regions(after),
        crisisLevel: levelAfter,
        viewVersion: null,
        lane: d.lane,
        seq: d.seq,
      });
    }
  }

  /** What the devices were told and what they would be told now: each view derived once per commit. */
  private views(): { committed: Committed; view: UserView } {
    const committed = this.committed!;
    return { committed: { ...committed, view: deriveView(committed.snapshot) }, view: deriveView(this.state!.snapshot) };
  }

  /** Holds the batch for a coalescing window; a crisis or a full batch ends the wait early. */
  private park(work: Work, delay: number): void {
    for (const d of work.batch) this.host.release(d);
    if (this.parked) return;
    this.parked = setTimeout(() => {
      this.parked = undefined;
      this.commitDue = true;
      this.kick();
    }, delay);
  }

  private async commit(work: Work, { committed, view }: { committed: Committed; view: UserView }): Promise<void> {
    clearTimeout(this.parked);
    this.parked = undefined;
    this.commitDue = false;
    const { metrics } = this.host;
    const state = this.state!;
    // Left in place until durable: if this commit throws, stop() returns them for redelivery.
    const { batch, rejections } = work;
    const crisis = batch.some((d) => d.lane === 'crisis') || inCrisis(state.snapshot);
    const lane: Lane = crisis ? 'crisis' : 'normal';
    const output = this.host.output(lane);
    const plan = planCommit({
      userId: this.userId,
      committed,
      state,
      view,
      safety: this.safety,
      viewVersion: this.viewVersion,
      lastSeq: this.lastSeq,
      audits: work.audits,
      stored: await this.readStoredView(batch, output.publisher),
      unfinished: this.unfinished,
      crisisLines: this.host.config.crisisLines,
    });
    if (plan.orphaned) metrics.orphanedViews++;
    // What a previous owner published with the loaded record goes first: the stream keeps the
    // user's last view, which must not end up older than this commit's.
    const loaded = this.unfinished;
    if (plan.resume && loaded) {
      const { snapshot } = fromPersisted(loaded.state, this.host.machine);
      const resumed = { view: deriveView(snapshot), safety: loaded.safety, devices: snapshot.context.devices };
      await this.retry('publish output', () => this.publish(output.publisher, plan.resume!, loaded.viewVersion, resumed));
    }
    // The record first, fenced by its revision: only the user's owner may then publish. The views
    // stream keeps the user's last view, and a deadline is one schedule per user, so output
    // from an owner that lost the user (paused past its partition's move) would replace the new
    // owner's. The outbox in the record lets the next owner finish a commit that died after it.
    const writing = performance.now();
    this.revision = await this.retry('save user record', () => output.store.save(this.userId, plan.record, this.revision));
    await Promise.all([
      this.retry('publish output', () =>
        this.publish(output.publisher, plan.outbox, plan.version, { view, safety: this.safety, devices: state.snapshot.context.devices }),
      ),
      plan.deadline !== undefined && this.retry('schedule deadline', () => output.publisher.schedule(this.userId, plan.deadline!)),
    ]);
    this.host.committed(lane, performance.now() - writing);
    if (plan.removedDevices.length) this.host.devicesRemoved(this.userId, plan.removedDevices);
    this.viewVersion = plan.version;
    this.unfinished = null;
    if (plan.outbox.view) metrics.viewsPublished++;
    this.observeLatency(batch, committed.view, view);
    this.committed = { snapshot: state.snapshot, safety: this.safety, devices: state.snapshot.context.devices };
    await Promise.all(rejections);
    work.batch = [];
    work.audits = [];
    work.rejections = [];
    for (const d of batch) {
      d.ack();
      this.host.release(d);
    }
    metrics.commits++;
  }

  /**
   * The user's stored view for the commit's plan, when the batch may follow a crash or a fence (it
   * holds a redelivery: only those pay for the read, and only those finish a loaded record's
   * outbox). Also read, for its sequence alone, when the actor does not know what its view publish
   * replaces (its first commit since activation): planning with it then would publish the loaded
   * record's audit records again, twice once JetStream's duplicate window has passed (the nemesis
   * run found a user's audit with a transition recorded twice).
   */
  private async readStoredView(batch: readonly Delivery[], publisher: Publisher): Promise<DeviceView | null | undefined> {
    const redelivered = batch.some((d) => d.redelivered);
    if (this.viewSeq !== undefined && !redelivered) return undefined;
    const stored = await this.retry('read last view', () => publisher.storedView(this.userId));
    this.viewSeq = stored?.seq ?? 0;
    if (!redelivered) return undefined;
    return stored ? stored.view : null;
  }

  /** Publishes a commit's output: the view at `version` (when it goes out) and the audit records. */
  private async publish(publisher: Publisher, out: Outbox, version: number, shown: Shown): Promise<void> {
    const { crisisLines, delivery } = this.host.config;
    await Promise.all([
      out.view &&
        this.replaceView(publisher, deviceViewOf(this.userId, shown.devices, version, shown.view, shown.safety, crisisLines, Date.now()), compressView(shown.view, delivery)),
      publisher.audit(out.audits),
    ]);
  }

  /**
   * Stores the view over the one the actor knows is stored, never over a newer one: an owner that
   * lost the user between its record's save and this publish (paused past its partition's move)
   * would otherwise leave the stored view older than the new owner's. Refused, it reads what is
   * stored from the stream's leader and replaces it only when its own view is newer.
   */
  private async replaceView(publisher: Publisher, view: DeviceView, compress: boolean): Promise<void> {
    for (;;) {
      try {
        this.viewSeq = await publisher.view(view, compress, this.viewSeq);
        return;
      } catch (err) {
        if (!isWrongLastSequence(err)) throw err;
      }
      const stored = await publisher.storedViewAtLeader(this.userId);
      this.viewSeq = stored?.seq ?? 0;
      if (stored?.view && stored.view.version >= view.version) {
        this.host.metrics.supersededViews++;
        return;
      }
    }
  }

  /** {@link retry} for this actor: its stop cancels it. */
  private retry<T>(op: string, fn: () => Promise<T>): Promise<T> {
    return retry(op, fn, this.host, this.cancel.signal);
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
    const { metrics, log } = this.host;
    const { publisher } = this.host.output('normal');
    metrics.alerts++;
    log.warn({ userId: this.userId, eventId: d.event.id, kind, latencyMs, budgetMs }, 'seed budget exceeded');
    publisher
      .alert({ kind, userId: this.userId, eventId: d.event.id, latencyMs, budgetMs, at: Date.now() })
      .catch((err: Error) => log.error({ err: err.message, kind }, 'alert publish failed'));
  }

  /**
   * Stops after a fence, the node's stop or a terminal error. After a fence or the node's stop,
   * everything not yet durable is left unacknowledged, never nak'ed (a nak comes back behind newer
   * events): the next session of the partition replays it in stream order, on this node after a
   * fence (the actor that takes the user over loads the record the fence found) or on the next
   * owner. A terminal error would fail the same way on every redelivery: those events become dead
   * letters.
   */
  private stop(err: Error): void {
    this.status = 'stopped';
    this.cancel.abort(err);
    clearTimeout(this.parked);
    const { metrics, log } = this.host;
    const fenced = err instanceof FencedError;
    const redeliver = fenced || this.host.signal.aborted;
    if (fenced) metrics.fenced++;
    log[redeliver ? 'warn' : 'error']({ userId: this.userId, err: err.message }, 'user actor stopped');
    // In this order: the replay holds the user's later deliveries back first, and the node forgets
    // this actor before anything is released, or a released slot would hand the next delivery to it.
    if (fenced) this.host.fenced(this.userId);
    this.host.evict(this);
    const work = this.work;
    this.work = undefined;
    for (const d of work ? [...work.batch, ...work.crisis, ...work.normal] : []) {
      // A dead letter not stored means the node is stopping: the message waits for its next run.
      if (!redeliver) this.host.deadLetterEvent(d.event, `not committed: ${err.message}`).then(() => d.ack(), () => undefined);
      this.host.release(d);
    }
  }
}

function regions(snapshot: UserSnapshot): AuditRecord['from'] {
  return { subscription: subscriptionStateOf(snapshot), crisis: inCrisis(snapshot) ? 'active' : 'stable' };
}

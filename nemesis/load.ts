/**
 * The nemesis run's load, throughout the schedule, at a modest rate (`--rate`, events a second):
 *
 * - **load users**, without devices: payment snapshots (`subscription_updated`) and invoice
 *   outcomes (`payment_failed`, `payment_recovered`), `assessment_completed`, `safety_plan_updated`,
 *   `emergency_contacts_updated`, and `device_registered` / `device_removed` of devices that never
 *   sign in (a removal still revokes);
 * - **cohorts** of crisis users, each user with two devices signed in from a device process of the
 *   cohort: the user presses the crisis button on one of its devices (`crisisButton()`, through the
 *   process's stdin), the run waits until every device shows the crisis, a clinician resolves it
 *   (`crisis_resolved`, role care), every device shows it ended, and later the user presses again.
 *
 * Each service publishes as its own role, through `FullmindPublisher` (clients/publisher.ts), and
 * each event is retried through transient failures with its id until stored (`surely`), so it is
 * stored once. A user's events are published one after the other, so its lane holds them in the
 * order published. Every user gets fewer events than a record's dedup window (32): the checker then
 * folds the statechart over the user's whole history (checker.ts).
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../actors/logger.ts';
import { FullmindPublisher, type EventDraft } from '../clients/publisher.ts';
import { assessmentCrisisLevel } from '../machines/crisis.ts';
import { scoreAssessment } from '../machines/scoring.ts';
import { ANSWERS, EMERGENCY_CONTACTS, SAFETY_PLAN } from '../tests/support/pii.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import type { Topology } from '../transport/topology.ts';
import { showsStoredView, type DeviceLog } from './checker.ts';
import { DeviceGroup } from './devices.ts';
import { whileTransient } from './retry.ts';
import { between, prng } from './schedule.ts';

/** The services the run publishes as, each on a connection of its own. */
const SERVICES = ['payments', 'assessments', 'care', 'accounts'] as const;
type Service = (typeof SERVICES)[number];

/** Events per load user, [least, most]: well under a record's dedup window of 32. */
const LOAD_USER_EVENTS = [8, 24] as const;
/** Events a crisis user's cycles may use (its registration takes 3 more); presses retried as new events need room too. */
const CRISIS_USER_EVENTS = 22;
/** Crisis users per cohort (one device process each), and their devices. */
const COHORT_USERS = 5;
const COHORT_DEVICES = ['phone', 'tablet'] as const;
/** A new cohort this often; at most this many device processes at once (the oldest retires). */
const COHORT_EVERY_MS = 40_000;
const LIVE_COHORTS = 3;
/** How long a cohort's users keep pressing; no cohort starts with less than the shorter time left. */
const COHORT_LIFETIME_MS = 75_000;
const COHORT_MIN_LIFE_MS = 45_000;
/** How long a retiring device process waits for its devices to apply their users' stored views. */
const RETIRE_SETTLE_MS = 30_000;
/** How long the run waits for what the devices show (a crisis, its end, the first view). */
const SHOW_TIMEOUT_MS = 20_000;
/** A device process's start: sign-ins through the callout, on a busy cluster. */
const DEVICES_READY_MS = 60_000;
/** Most events a load user sends in one go. */
const BURST_MOST = 4;
/** Ticks of the load's pacing. */
const TICK_MS = 100;

/** Options of {@link Load.start}. */
export interface LoadOptions {
  /** Every server, comma-separated (`NATS_URL`). */
  url: string;
  topology: Topology;
  seed: number;
  ratePerS: number;
  /** The device tokens bucket (a device signs in with a token recorded there). */
  tokens: KV;
  secretsDir: string;
  /** The environment of device processes (the deployment: NATS_URL, FM_PARTITIONS, FM_REPLICAS, FM_SECRETS). */
  deviceEnv: Record<string, string>;
  /** Where each device process writes its log. */
  logDir: string;
  log: Logger;
  /** When a publish still failing gives up (the run's hard deadline). */
  giveUpAt: number;
  /** When the load ends: no cohort starts in its last {@link COHORT_MIN_LIFE_MS}. */
  endsAt: number;
  /** The version of the user's stored view (null: none): a retiring device process waits until its devices applied it. */
  storedVersion(userId: string): Promise<number | null>;
}

/** What the load did. */
export interface LoadStats {
  published: number;
  /** Given up after retrying until the run's deadline. */
  failed: number;
  /** Published per event type. */
  byType: Record<string, number>;
  loadUsers: number;
  cohorts: number;
  devices: number;
  presses: number;
  /** Presses no attempt of which the device saw acknowledged within its retries (one may have been stored). */
  pressesUnacknowledged: number;
  /** Presses not made: the user's devices still showed the previous crisis. */
  pressesSkipped: number;
  /** Crises no device showed, or whose end it did not show, within the wait (the checker decides about them). */
  slowShows: number;
  resolves: number;
  /** Cohorts whose device process did not start. */
  cohortsFailed: number;
}

/** A user without devices: its events come from a seeded mix. */
interface LoadUser {
  id: string;
  left: number;
  sent: number;
  lastAt: number;
  /** Devices registered and not removed (never signed in). */
  ghosts: string[];
  nextGhost: number;
}

/** The load of a run; see the module comment. */
export class Load {
  readonly stats: LoadStats = {
    published: 0,
    failed: 0,
    byType: {},
    loadUsers: 0,
    cohorts: 0,
    devices: 0,
    presses: 0,
    pressesUnacknowledged: 0,
    pressesSkipped: 0,
    slowShows: 0,
    resolves: 0,
    cohortsFailed: 0,
  };
  /** Every device process started (retired ones too: their devices' logs are read at the end). */
  readonly groups: DeviceGroup[] = [];
  private readonly options: LoadOptions;
  private readonly connections: NatsConnection[];
  private readonly publishers: Record<Service, FullmindPublisher>;
  private readonly random: () => number;
  private readonly stopping = new AbortController();
  private readonly running: Promise<void>[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private readonly retiring = new Set<DeviceGroup>();
  private nextUser = 0;

  private constructor(options: LoadOptions, connections: NatsConnection[]) {
    this.options = options;
    this.connections = connections;
    this.publishers = Object.fromEntries(SERVICES.map((s, i) => [s, new FullmindPublisher(connections[i]!, { topology: options.topology })])) as Record<Service, FullmindPublisher>;
    this.random = prng(options.seed ^ 0x5eed_10ad);
  }

  /** Connects the services and starts the load users and the cohorts. */
  static async start(options: LoadOptions): Promise<Load> {
    // The load's assessments must not start crises of their own: the crisis users' presses are measured.
    if (assessmentCrisisLevel(scoreAssessment('gad7', [...ANSWERS.gad7])) !== null) throw new Error('the load assessment would start a crisis');
    const connections = await Promise.all(SERVICES.map((role) => connectNats({ servers: options.url, name: `nemesis/${role}`, credentials: { role } })));
    const load = new Load(options, connections);
    load.running.push(load.loadUsers(), load.cohorts());
    return load;
  }

  /** The devices' logs so far. */
  deviceLogs(): DeviceLog[] {
    return this.groups.flatMap((g) => [...g.logs.values()]);
  }

  /** Stops making events; waits up to `timeoutMs` for what is under way (publishes retrying, crisis cycles). */
  async stop(timeoutMs: number): Promise<boolean> {
    this.stopping.abort();
    const settled = Promise.all([...this.running, ...this.inFlight]).then(() => true);
    return Promise.race([settled, sleep(timeoutMs).then(() => false)]);
  }

  /** Stops the device processes and closes the connections. */
  async close(): Promise<void> {
    this.stopping.abort();
    await Promise.all(this.groups.map((g) => g.stop()));
    await Promise.all(this.connections.map((nc) => drainNats(nc)));
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  /** Sleeps unless the load stops. */
  private pause(ms: number): Promise<void> {
    return sleep(ms, undefined, { signal: this.stopping.signal }).catch(() => undefined);
  }

  /**
   * Publishes one event as `service`, retried with its id through transient failures (and an
   * earlier attempt still in process) until stored, as `surely` does (tests/support/clusterSystem.ts);
   * false if it gave up at the run's deadline.
   */
  private async publish(service: Service, draft: EventDraft): Promise<boolean> {
    try {
      await whileTransient(() => this.publishers[service].publish(draft), this.options.giveUpAt);
      this.stats.published++;
      this.stats.byType[draft.type] = (this.stats.byType[draft.type] ?? 0) + 1;
      return true;
    } catch (err) {
      this.stats.failed++;
      this.options.log.error({ eventId: draft.id, type: draft.type, err: (err as Error).message }, 'publish gave up');
      return false;
    }
  }

  // ─── load users ──────────────────────────────────────────────────────────────────────────────

  private newLoadUser(): LoadUser {
    this.stats.loadUsers++;
    return { id: `nl${String(this.nextUser++).padStart(5, '0')}`, left: between(this.random, ...LOAD_USER_EVENTS), sent: 0, lastAt: 0, ghosts: [], nextGhost: 0 };
  }

  /**
   * Paces the load users' events at the rate. A user picked sends a burst of 1 to
   * {@link BURST_MOST} events, one after the other (each stored before the next is sent), so a
   * user often has several events in its lane at once: what a fault can then reorder.
   */
  private async loadUsers(): Promise<void> {
    const { ratePerS } = this.options;
    const idle: LoadUser[] = Array.from({ length: Math.max(10, Math.ceil(ratePerS / 2)) }, () => this.newLoadUser());
    let budget = 0;
    let last = Date.now();
    while (!this.stopped) {
      await this.pause(TICK_MS);
      const now = Date.now();
      budget = Math.min(budget + ((now - last) / 1000) * ratePerS, ratePerS);
      last = now;
      while (budget >= 1 && idle.length > 0 && !this.stopped) {
        const user = idle.splice(Math.floor(this.random() * idle.length), 1)[0]!;
        const burst = Math.min(user.left, Math.floor(budget), between(this.random, 1, BURST_MOST));
        budget -= burst;
        const drafts = Array.from({ length: burst }, () => this.nextEvent(user));
        const sent = (async () => {
          for (const { service, draft } of drafts) await this.publish(service, draft);
          idle.push(user.left > 0 ? user : this.newLoadUser());
        })();
        this.track(sent);
      }
    }
  }

  private track(work: Promise<unknown>): void {
    const done = work.then(() => undefined);
    this.inFlight.add(done);
    void done.finally(() => this.inFlight.delete(done));
  }

  /** A load user's next event (its first makes it a subscriber or gives it a device). */
  private nextEvent(user: LoadUser): { service: Service; draft: EventDraft } {
    const r = this.random;
    const at = (user.lastAt = Math.max(Date.now(), user.lastAt + 1));
    const id = `${user.id}-e${user.sent++}`;
    user.left--;
    const base = { id, userId: user.id, at };
    const subscriptionId = `sub_${user.id}`;
    const tier = () => (r() < 0.5 ? ('premium' as const) : ('basic' as const));
    const pick = user.sent === 1 ? (r() < 0.7 ? 0 : 0.9) : r();
    if (pick < 0.3) {
      const s = r();
      const draft =
        s < 0.7
          ? { type: 'subscription_updated' as const, ...base, subscriptionId, status: 'active' as const, tier: tier() }
          : { type: 'subscription_updated' as const, ...base, subscriptionId, status: s < 0.85 ? ('past_due' as const) : ('canceled' as const), tier: tier() };
      return { service: 'payments', draft };
    }
    if (pick < 0.4) return { service: 'payments', draft: { type: 'payment_failed', ...base, subscriptionId, attemptCount: between(r, 1, 3), nextAttemptAt: at + 86_400_000 } };
    if (pick < 0.5) return { service: 'payments', draft: { type: 'payment_recovered', ...base, subscriptionId } };
    if (pick < 0.62) return { service: 'assessments', draft: { type: 'assessment_completed', ...base, instrument: 'gad7', answers: [...ANSWERS.gad7] } };
    if (pick < 0.7) return { service: 'care', draft: { type: 'safety_plan_updated', ...base, plan: SAFETY_PLAN } };
    if (pick < 0.75) return { service: 'care', draft: { type: 'emergency_contacts_updated', ...base, contacts: EMERGENCY_CONTACTS } };
    if (pick < 0.88 || user.ghosts.length === 0) {
      const deviceId = `ghost${user.nextGhost++}`;
      user.ghosts.push(deviceId);
      return { service: 'accounts', draft: { type: 'device_registered', ...base, deviceId, platform: 'web' } };
    }
    const deviceId = user.ghosts.splice(Math.floor(r() * user.ghosts.length), 1)[0]!;
    return { service: 'accounts', draft: { type: 'device_removed', ...base, deviceId } };
  }

  // ─── crisis cohorts ──────────────────────────────────────────────────────────────────────────

  /** Starts a cohort every {@link COHORT_EVERY_MS}, retiring the oldest device process beyond {@link LIVE_COHORTS}. */
  private async cohorts(): Promise<void> {
    const cohorts: Promise<void>[] = [];
    for (let k = 0; !this.stopped && Date.now() + COHORT_MIN_LIFE_MS < this.options.endsAt; k++) {
      cohorts.push(this.cohort(k));
      await this.pause(COHORT_EVERY_MS);
    }
    await Promise.all(cohorts);
  }

  /** One cohort: registers its users, starts their devices, and runs their crisis cycles. */
  private async cohort(k: number): Promise<void> {
    const { log } = this.options;
    this.stats.cohorts++;
    const users = Array.from({ length: COHORT_USERS }, (_, i) => `nc${String(k).padStart(3, '0')}u${i}`);
    const registered = await Promise.all(
      users.map(async (userId) => {
        let at = Date.now();
        const next = () => (at = Math.max(Date.now(), at + 1));
        for (const [i, deviceId] of COHORT_DEVICES.entries()) {
          if (!(await this.publish('accounts', { type: 'device_registered', id: `${userId}-reg${i}`, userId, at: next(), deviceId, platform: 'ios' }))) return false;
        }
        return this.publish('payments', { type: 'subscription_updated', id: `${userId}-sub`, userId, at: next(), subscriptionId: `sub_${userId}`, status: 'active', tier: 'premium' });
      }),
    );
    if (this.stopped || registered.includes(false)) return;
    const pairs = users.flatMap((u) => COHORT_DEVICES.map((d) => `${u}:${d}`));
    let group: DeviceGroup;
    try {
      const name = `devices-c${k}`;
      group = await DeviceGroup.start({
        name,
        pairs,
        tokens: this.options.tokens,
        secretsDir: this.options.secretsDir,
        env: this.options.deviceEnv,
        logFile: join(this.options.logDir, `${name}.log`),
        readyTimeoutMs: DEVICES_READY_MS,
        giveUpAt: this.options.giveUpAt,
      });
    } catch (err) {
      this.stats.cohortsFailed++;
      log.error({ cohort: k, err: (err as Error).message }, 'device process did not start');
      return;
    }
    this.groups.push(group);
    this.stats.devices += pairs.length;
    this.retireBeyond(LIVE_COHORTS);
    const until = Date.now() + COHORT_LIFETIME_MS;
    await Promise.all(users.map((u) => this.crisisUser(group, u, until)));
  }

  /**
   * Stops the oldest device processes beyond `live` once their devices applied their users'
   * stored views (or after {@link RETIRE_SETTLE_MS}): their logs stay for the checker.
   */
  private retireBeyond(live: number): void {
    const running = this.groups.filter((g) => g.process.running && !this.retiring.has(g));
    for (const g of running.slice(0, Math.max(0, running.length - live))) {
      this.retiring.add(g);
      this.track(this.retire(g));
    }
  }

  private async retire(group: DeviceGroup): Promise<void> {
    const giveUpAt = Date.now() + RETIRE_SETTLE_MS;
    while (Date.now() < giveUpAt && !this.stopped) {
      const devices = [...group.logs.values()];
      const versions = new Map(await Promise.all([...new Set(devices.map((d) => d.userId))].map(async (u) => [u, await this.options.storedVersion(u).catch(() => undefined)] as const)));
      const settled = (d: DeviceLog) => {
        const version = versions.get(d.userId);
        return version === null || (version !== undefined && showsStoredView(d, version));
      };
      if (devices.every(settled)) break;
      await this.pause(1_000);
    }
    await group.stop();
  }

  /** A crisis user's cycles: press, every device in crisis, resolved, every device out of it. */
  private async crisisUser(group: DeviceGroup, userId: string, until: number): Promise<void> {
    const r = this.random;
    const showsAll = (test: (d: DeviceLog) => boolean) => group.until(userId, (ds) => ds.length > 0 && ds.every(test), SHOW_TIMEOUT_MS);
    if (!(await showsAll((d) => d.applied.length > 0))) this.stats.slowShows++;
    for (let left = CRISIS_USER_EVENTS; left >= 3 && !this.stopped && Date.now() < until && group.process.running; ) {
      await this.pause(between(r, 2_000, 6_000));
      if (this.stopped) return;
      if (r() < 0.4) {
        const tier = r() < 0.5 ? 'premium' : 'basic';
        await this.publish('payments', { type: 'subscription_updated', id: `${userId}-e${left}`, userId, at: Date.now(), subscriptionId: `sub_${userId}`, status: 'active', tier });
        left--;
      }
      if (!(await showsAll((d) => d.applied.at(-1)?.crisis === false))) {
        this.stats.pressesSkipped++;
        continue;
      }
      const device = COHORT_DEVICES[between(r, 0, COHORT_DEVICES.length - 1)]!;
      this.stats.presses++;
      const press = await group.press(`${userId}:${device}`);
      left--;
      if (press.storedAt === null) this.stats.pressesUnacknowledged++;
      if (!(await showsAll((d) => d.applied.some((a) => a.crisis && a.appliedAt >= press.at)))) this.stats.slowShows++;
      await this.pause(between(r, 500, 2_000));
      if (this.stopped) return;
      // A clinician ends it, after the press (a resolution older than the crisis's last signal does not count).
      if (await this.publish('care', { type: 'crisis_resolved', id: `${userId}-r${left}`, userId, at: Math.max(Date.now(), press.at + 1), by: 'clinician' })) this.stats.resolves++;
      left--;
    }
  }
}

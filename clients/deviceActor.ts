/**
 * The device side: a small client library that runs in the device's process. A device actor holds
 * the last view it applied and applies a view only when its version is newer, so it applies each
 * newer view once, whatever order or how often views reach it.
 *
 * The server keeps nothing per device. While connected, a device holds a core subscription on its
 * user's view subject: the runtime's publish that stores the view reaches it through NATS's own
 * fan-out. On start and after every reconnect it subscribes first, then reads the last stored view
 * by direct get (and once more a second later, for a cluster's sake: {@link CATCH_UP_AGAIN_MS}), so
 * a view stored while it was away (or while the subscription was being made) is applied once, and an
 * offline device costs the server nothing. It checks that its server answers as often as its sync
 * policy says (every second in crisis), and moves to another server when it does not, so a crisis
 * view is not kept from it by a server that died or was cut off.
 *
 * The crisis path that waits for nothing (README, "The crisis path"): a press shows the crisis on
 * its device at once, and goes to the user's other devices by core NATS on the press subject as
 * well as to the crisis lane. A device that hears a press no stored view accounts for yet shows the
 * stored view with the crisis over it ({@link withProvisionalCrisis}), until a stored view accounts
 * for the press: a crisis only adds features and only a person ends one, so showing it early is safe.
 * A device may hold a second connection, on another server ({@link DeviceActorOptions.standby}):
 * it hears and sends on both, so a server that froze does not keep a crisis from it until it notices.
 */
import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager, type DirectStreamAPI, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { accountsFor, withProvisionalCrisis, type HeardPress } from '../machines/deviceView.ts';
import { CrisisButton } from '../machines/events.ts';
import type { SyncFrequency } from '../machines/features.ts';
import { decode, encode } from '../transport/codec.ts';
import { onReconnect } from '../transport/connection.ts';
import { isTransient } from '../transport/errors.ts';
import { publishEvent } from '../transport/eventPublisher.ts';
import type { DeviceView } from '../transport/schemas.ts';
import { createTopology, type Topology } from '../transport/topology.ts';
import { lastView } from '../transport/viewStore.ts';
import { decodeDeviceView } from '../transport/viewWire.ts';

/** Options of {@link DeviceActor.start}. */
export interface DeviceActorOptions {
  nc: NatsConnection;
  userId: string;
  deviceId: string;
  /** The deployment's topology (default prefix when omitted). */
  topology?: Topology;
  /**
   * A second connection of the device, signed in the same way, on another server where it can:
   * the crisis path's second way in. The device hears views and presses on both, sends its
   * presses on both, and tries to store a press through each in turn, so one server that stopped
   * answering keeps nothing from it. Optional: a connection costs a phone battery.
   */
  standby?: NatsConnection;
  /** The view the device held from an earlier run, if it stored one. */
  held?: DeviceView | null;
  /**
   * Called for each view the device shows: a stored view it applied, or (`provisional`) the view it
   * holds with the crisis of a press heard before any stored view accounted for it.
   */
  onApply?: (view: DeviceView, provisional: boolean) => void;
  /** Called for a view that could not be decoded, or a catch-up that failed for good (skipped). */
  onReject?: (error: Error) => void;
  /** Called after each catch-up (start, reconnect) with the view the device holds then. */
  onCatchUp?: (view: DeviceView | null) => void;
  /** Called once when a view no longer lists this device: it was removed, and has stopped. */
  onRemoved?: () => void;
}

/** First and largest wait between catch-up attempts that failed transiently (a restarting server). */
const CATCH_UP_RETRY_MS = { first: 50, max: 1_000 };
/**
 * How long after a catch-up the device reads the last view once more. In a cluster a new
 * subscription's interest reaches the other servers a moment after the device's own server took
 * it, and a direct get may be answered by a replica a moment behind: a view stored in that moment
 * would reach the device by neither (the chaos test saw it once devices signed in mid-traffic).
 */
const CATCH_UP_AGAIN_MS = 1_000;

/**
 * Most presses a device keeps while no stored view accounts for them: more change nothing it shows,
 * and a device flooding its user's press subject must not grow the others' memory.
 */
const MAX_HEARD = 16;

/** How long one attempt to store a crisis press waits before the device sends it again. */
const PRESS_ATTEMPT_MS = 1_000;

/**
 * How often a device asks its server for a PONG, by the sync frequency of the view it holds (DESIGN
 * §12: 1 s realtime, 30 s background), and how long it waits for one: a server that does not
 * answer (the path to it cut, the server stopped) is left for another at once, instead of after
 * the client's two missed pings minutes apart. A device in crisis is realtime.
 */
const SERVER_CHECK_MS: Readonly<Record<SyncFrequency | 'none', number>> = { realtime: 1_000, frequent: 5_000, standard: 10_000, background: 30_000, none: 30_000 };
const SERVER_ANSWER_MS = 2_000;

/** One connection of a device, and what the actor holds on it. */
interface Link {
  nc: NatsConnection;
  js: JetStreamClient;
  subscriptions: Subscription[];
  unwatch: () => void;
  serverCheck?: NodeJS.Timeout;
  /** The server check under way (one at a time: the periodic one and a press's share it). */
  checking?: Promise<void>;
}

/** One device of one user. */
export class DeviceActor {
  readonly userId: string;
  readonly deviceId: string;
  /** Views applied by this actor. */
  applied = 0;
  private held: DeviceView | null;
  /** Presses heard that no view held since accounts for, by event id. */
  private readonly heard = new Map<string, HeardPress>();
  private readonly options: DeviceActorOptions;
  private readonly topology: Topology;
  private readonly direct: DirectStreamAPI;
  /** The device's connection, then its standby if it has one. */
  private readonly links: Link[];
  private stopped = false;
  private again: NodeJS.Timeout | undefined;
  private catchingUp: Promise<void> = Promise.resolve();

  private constructor(options: DeviceActorOptions, direct: DirectStreamAPI) {
    this.options = options;
    this.userId = options.userId;
    this.deviceId = options.deviceId;
    this.held = options.held ?? null;
    this.topology = options.topology ?? createTopology();
    this.direct = direct;
    this.links = [options.nc, ...(options.standby ? [options.standby] : [])].map((nc) => this.link(nc));
  }

  /** Subscribes on a connection to the user's views and presses, and watches it. */
  private link(nc: NatsConnection): Link {
    const read = (apply: (m: Msg) => void) => (err: Error | null, m: Msg) => {
      if (err) return;
      try {
        apply(m);
      } catch (e) {
        this.options.onReject?.(e as Error);
      }
    };
    const link: Link = {
      nc,
      // Publishes only: no JetStream API check, which a device's permissions do not allow.
      js: jetstream(nc, { checkAPI: false }),
      subscriptions: [
        nc.subscribe(this.topology.subjects.view(this.userId), { callback: read((m) => this.offer(decodeDeviceView(m.data, m.headers, { userId: this.userId }))) }),
        nc.subscribe(this.topology.subjects.press(this.userId), { callback: read((m) => this.hear(decode(CrisisButton, m.data, { userId: this.userId }))) }),
      ],
      // nats.js subscribes again on reconnect before it reports it: views stored meanwhile are read then.
      unwatch: onReconnect(nc, () => void this.catchUp(true).then(() => this.catchUpAgain())),
    };
    // From the start: a server that stops answering during the first catch-up is left as well.
    this.checkServerLater(link);
    return link;
  }

  /** Subscribes to the user's views, catches up with the last stored one, and applies from then on. */
  static async start(options: DeviceActorOptions): Promise<DeviceActor> {
    // Only direct gets: no JetStream API check, which a device's permissions need not allow.
    const { direct } = await jetstreamManager(options.nc, { checkAPI: false });
    const actor = new DeviceActor(options, direct);
    // The subscription is on the server before the read: a view stored in between arrives by one or the other.
    await options.nc.flush();
    await actor.catchUp(true);
    actor.catchUpAgain();
    return actor;
  }

  /** The next check that a connection's server answers, as often as the held view's sync frequency says. */
  private checkServerLater(link: Link): void {
    if (this.stopped) return;
    const every = SERVER_CHECK_MS[this.held?.sync.frequency ?? 'none'];
    link.serverCheck = setTimeout(() => void this.checkServer(link).finally(() => this.checkServerLater(link)), every);
  }

  /** Moves a connection to another server when its own does not answer a PING within {@link SERVER_ANSWER_MS}. */
  private checkServer(link: Link): Promise<void> {
    link.checking ??= this.pingServer(link.nc).finally(() => (link.checking = undefined));
    return link.checking;
  }

  private async pingServer(nc: NatsConnection): Promise<void> {
    if (this.stopped || nc.isClosed()) return;
    let timer: NodeJS.Timeout | undefined;
    const silent = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), SERVER_ANSWER_MS)));
    const answered = nc.rtt().then(
      () => false,
      () => false,
    );
    const noAnswer = await Promise.race([answered, silent]);
    clearTimeout(timer);
    if (noAnswer && !this.stopped) await nc.reconnect().catch(() => undefined);
  }

  /** The last stored view the device applied. */
  get view(): DeviceView | null {
    return this.held;
  }

  /** What the device shows now: the stored view it holds, with the crisis of presses heard and not yet accounted for. */
  get shown(): DeviceView | null {
    return this.held && withProvisionalCrisis(this.held, [...this.heard.values()]);
  }

  /**
   * The user pressed the crisis button on this device: it shows the crisis at once, and sends a
   * `crisis_button` event, the one event a device may publish, to its user's crisis lane and to
   * its user's other devices (the press subject, on every connection). Resolves once JetStream
   * stored it; until then both are sent again (the same event: stored once, heard once), each
   * attempt waiting {@link PRESS_ATTEMPT_MS}, through the device's connections in turn; an attempt
   * that fails checks that connection's server at once, and moves off it if it stopped answering.
   * Rejects only on a terminal failure, or when the actor stops.
   */
  async crisisButton(): Promise<PubAck> {
    const event = { type: 'crisis_button', id: randomUUID(), userId: this.userId, at: Date.now(), deviceId: this.deviceId } as const;
    this.hear(event);
    const press = encode(CrisisButton, event);
    for (let attempt = 0; ; attempt++) {
      const open = this.links.filter((l) => !l.nc.isClosed() && !l.nc.isDraining());
      for (const l of open) l.nc.publish(this.topology.subjects.press(this.userId), press);
      const link = open[attempt % open.length] ?? this.links[0]!;
      try {
        return await publishEvent(link.js, this.topology.subjects, event, { timeoutMs: PRESS_ATTEMPT_MS });
      } catch (err) {
        if (!isTransient(err) || this.stopped) throw err;
        // Not stored in time: the connection's server may have stopped answering; do not wait for the periodic check.
        void this.checkServer(link);
      }
    }
  }

  /** Applies a view if it is newer and lists this device; stops when a newer view no longer lists it. */
  private offer(view: DeviceView): void {
    if (this.stopped || (this.held && view.version <= this.held.version)) return;
    if (view.devices.includes(this.deviceId)) {
      this.held = view;
      this.applied++;
      for (const [id, press] of this.heard) if (accountsFor(view, press)) this.heard.delete(id);
      this.options.onApply?.(this.shown!, this.heard.size > 0);
    } else if (this.held) {
      // Removed: nothing of the user's stays on the device, and nothing new is applied.
      this.held = null;
      this.heard.clear();
      void this.stop();
      this.options.onRemoved?.();
    }
    // Otherwise not registered yet: the view that registers it lists it.
  }

  /**
   * A press of the user's (this device's, or another's on the press subject) that the held view
   * does not account for yet: shown at once as a provisional crisis. A device that holds no view
   * (not registered yet) shows nothing, as for a stored view.
   */
  private hear(press: HeardPress): void {
    if (this.stopped || !this.held || this.heard.size >= MAX_HEARD || this.heard.has(press.id) || accountsFor(this.held, press)) return;
    const inCrisis = this.heard.size > 0;
    this.heard.set(press.id, { id: press.id, at: press.at });
    if (!inCrisis) this.options.onApply?.(this.shown!, true);
  }

  /** Schedules one more catch-up {@link CATCH_UP_AGAIN_MS} from now (one at a time). */
  private catchUpAgain(): void {
    clearTimeout(this.again);
    if (!this.stopped) this.again = setTimeout(() => void this.catchUp(false), CATCH_UP_AGAIN_MS);
  }

  /**
   * Reads the last stored view and offers it, again after transient failures, until it answers or
   * the actor stops. `report`: the catch-up of a start or a reconnect, told to `onCatchUp` (the
   * safety read a moment later is not: it would look like a reconnect that never happened).
   */
  private catchUp(report: boolean): Promise<void> {
    this.catchingUp = this.catchingUp.then(async () => {
      for (let wait = CATCH_UP_RETRY_MS.first; !this.stopped; wait = Math.min(wait * 2, CATCH_UP_RETRY_MS.max)) {
        try {
          const view = await lastView(this.direct, this.topology, this.userId);
          if (view) this.offer(view);
          if (report) this.options.onCatchUp?.(this.held);
          return;
        } catch (err) {
          if (!isTransient(err)) {
            this.options.onReject?.(err as Error);
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }
    });
    return this.catchingUp;
  }

  /** Stops applying: its subscriptions end; a later start catches up with the last stored view. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.again);
    for (const link of this.links) {
      clearTimeout(link.serverCheck);
      link.unwatch();
      for (const sub of link.subscriptions) sub.unsubscribe();
    }
    await this.catchingUp;
  }
}

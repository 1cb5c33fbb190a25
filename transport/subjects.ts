/**
 * Every NATS subject of the wire contract (DESIGN §2), built and parsed in this one place.
 * The prefix (`fm` by default) lets several deployments share a NATS account.
 */
import { CRISIS_LANE_TYPES, type UserEventType } from '../machines/events.ts';

/** Default subject prefix. */
export const DEFAULT_PREFIX = 'fm';

/** The two event lanes. */
export type Lane = 'normal' | 'crisis';

/** The lane an event type travels on. */
export function laneOf(type: UserEventType): Lane {
  return CRISIS_LANE_TYPES.has(type) ? 'crisis' : 'normal';
}

/** An event subject taken apart (as published, or as a lane stores it under its partition). */
export interface ParsedEventSubject {
  lane: Lane;
  userId: string;
  type: string;
  /** The partition a lane stored it under; absent on a subject as published. */
  partition?: number;
}

/** The subjects of one deployment. */
export interface Subjects {
  readonly prefix: string;
  /**
   * `fm.evt.<userId>.<type>` or `fm.crisis.<userId>.<type>`, by the type's lane unless `lane` says
   * otherwise (the bench sends crisis events down the normal lane to measure what the lane buys).
   */
  event(userId: string, type: UserEventType, lane?: Lane): string;
  /**
   * `fm.evt.<partition>.<userId>.<type>`: where a lane stores an event (its subject transform puts
   * the user's partition in). The tokens may be transform expressions (the topology's transform).
   */
  stored(lane: Lane, partition: number | string, userId: string, type: string): string;
  /** `fm.evt.<partition>.>`: one partition of a lane, as stored (a partition consumer's filter). */
  partition(lane: Lane, partition: number): string;
  /** `fm.sched.<userId>`: the user's pending deadline, a message schedule in the normal lane. */
  schedule(userId: string): string;
  /**
   * `fm.view.<userId>`: the user's device view, stored as its last value and fanned out by core
   * NATS to the devices subscribed while connected. One subject per user, so a device's
   * permissions can name exactly its own user's view.
   */
  view(userId: string): string;
  /**
   * `fm.press.<userId>`: a crisis press as its device sends it to the user's other devices by core
   * NATS, beside the durable publish on the crisis lane. No stream takes it: it is the crisis path
   * that does not wait for JetStream (README, "The crisis path").
   */
  press(userId: string): string;
  /** `fm.audit.<userId>`. */
  audit(userId: string): string;
  /** `fm.dlq.<reason>`. */
  deadLetter(reason: string): string;
  /** `fm.alert.<kind>`: budget overruns (the seed's escalation). */
  alert(kind: string): string;
  /** `fm.ctl.<name>`: requests to runtime nodes (core NATS, not stored), e.g. `metrics`. */
  control(name: string): string;
  /**
   * `fm.ctl.devices.<userId>` (`*`: every user's): the runtime tells the auth callout that a user's
   * view dropped devices (core NATS), so it kicks their connections and revokes their tokens.
   */
  deviceRevocation(userId: string): string;
  /** Wildcards for stream and consumer filters. */
  readonly all: {
    /** Every event subject of the lane as published (`fm.evt.*.*`): what its stream takes. */
    normal: string;
    crisis: string;
    schedules: string;
    views: string;
    audit: string;
    deadLetters: string;
    alerts: string;
    /** Every user's `customer_linked` events as stored (the ingress's customer lookup follows them). */
    customerLinks: string;
  };
  /** Splits an event subject, or returns `undefined` when it is not one. */
  parseEvent(subject: string): ParsedEventSubject | undefined;
}

const LANE_TOKEN: Readonly<Record<Lane, string>> = { normal: 'evt', crisis: 'crisis' };

/** The subject the server sends the auth callout its requests on (NATS's own, in the callout's account). */
export const AUTH_CALLOUT_SUBJECT = '$SYS.REQ.USER.AUTH';

/** The system account's kick service of one server (`*`: any), which closes a client connection by its id (NATS's own). */
export function kickSubject(serverId: string): string {
  return `$SYS.REQ.SERVER.${serverId}.KICK`;
}

/** Builds the subjects for a prefix. */
export function createSubjects(prefix: string = DEFAULT_PREFIX): Subjects {
  const event = (userId: string, type: UserEventType, lane = laneOf(type)) => `${prefix}.${LANE_TOKEN[lane]}.${userId}.${type}`;
  return {
    prefix,
    event,
    stored: (lane, partition, userId, type) => `${prefix}.${LANE_TOKEN[lane]}.${partition}.${userId}.${type}`,
    partition: (lane, partition) => `${prefix}.${LANE_TOKEN[lane]}.${partition}.>`,
    schedule: (userId) => `${prefix}.sched.${userId}`,
    view: (userId) => `${prefix}.view.${userId}`,
    press: (userId) => `${prefix}.press.${userId}`,
    audit: (userId) => `${prefix}.audit.${userId}`,
    deadLetter: (reason) => `${prefix}.dlq.${reason}`,
    alert: (kind) => `${prefix}.alert.${kind}`,
    control: (name) => `${prefix}.ctl.${name}`,
    deviceRevocation: (userId) => `${prefix}.ctl.devices.${userId}`,
    all: {
      normal: `${prefix}.evt.*.*`,
      crisis: `${prefix}.crisis.*.*`,
      schedules: `${prefix}.sched.*`,
      views: `${prefix}.view.*`,
      audit: `${prefix}.audit.>`,
      deadLetters: `${prefix}.dlq.>`,
      alerts: `${prefix}.alert.>`,
      customerLinks: `${prefix}.evt.*.*.customer_linked`,
    },
    parseEvent(subject) {
      const tokens = subject.split('.');
      const lane = tokens[1] === 'evt' ? 'normal' : tokens[1] === 'crisis' ? 'crisis' : undefined;
      if (!lane || tokens[0] !== prefix) return undefined;
      if (tokens.length === 4) return { lane, userId: tokens[2]!, type: tokens[3]! };
      if (tokens.length !== 5 || !/^\d+$/.test(tokens[2]!)) return undefined;
      return { lane, partition: Number(tokens[2]), userId: tokens[3]!, type: tokens[4]! };
    },
  };
}

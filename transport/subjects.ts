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

/** An event subject taken apart. */
export interface ParsedEventSubject {
  lane: Lane;
  userId: string;
  type: string;
}

/** The subjects of one deployment. */
export interface Subjects {
  readonly prefix: string;
  /**
   * `fm.evt.<userId>.<type>` or `fm.crisis.<userId>.<type>`, by the type's lane unless `lane` says
   * otherwise (the bench sends crisis events down the normal lane to measure what the lane buys).
   */
  event(userId: string, type: UserEventType, lane?: Lane): string;
  /** `fm.view.<userId>.<deviceId>`: last value per subject. */
  view(userId: string, deviceId: string): string;
  /** `fm.audit.<userId>`. */
  audit(userId: string): string;
  /** `fm.dlq.<reason>`. */
  deadLetter(reason: string): string;
  /** `fm.alert.<kind>`: budget overruns (the seed's escalation). */
  alert(kind: string): string;
  /** `fm.ctl.<name>`: requests to runtime nodes (core NATS, not stored), e.g. `metrics`. */
  control(name: string): string;
  /** Wildcards for stream and consumer filters. */
  readonly all: {
    normal: string;
    crisis: string;
    views: string;
    userViews(userId: string): string;
    audit: string;
    deadLetters: string;
    alerts: string;
    /** Every user's `customer_linked` events (the ingress's customer lookup follows them). */
    customerLinks: string;
  };
  /** Splits an event subject, or returns `undefined` when it is not one. */
  parseEvent(subject: string): ParsedEventSubject | undefined;
}

const LANE_TOKEN: Readonly<Record<Lane, string>> = { normal: 'evt', crisis: 'crisis' };

/** Builds the subjects for a prefix. */
export function createSubjects(prefix: string = DEFAULT_PREFIX): Subjects {
  const event = (userId: string, type: UserEventType, lane = laneOf(type)) => `${prefix}.${LANE_TOKEN[lane]}.${userId}.${type}`;
  return {
    prefix,
    event,
    view: (userId, deviceId) => `${prefix}.view.${userId}.${deviceId}`,
    audit: (userId) => `${prefix}.audit.${userId}`,
    deadLetter: (reason) => `${prefix}.dlq.${reason}`,
    alert: (kind) => `${prefix}.alert.${kind}`,
    control: (name) => `${prefix}.ctl.${name}`,
    all: {
      normal: `${prefix}.evt.>`,
      crisis: `${prefix}.crisis.>`,
      views: `${prefix}.view.>`,
      userViews: (userId) => `${prefix}.view.${userId}.*`,
      audit: `${prefix}.audit.>`,
      deadLetters: `${prefix}.dlq.>`,
      alerts: `${prefix}.alert.>`,
      customerLinks: event('*', 'customer_linked', 'normal'),
    },
    parseEvent(subject) {
      const tokens = subject.split('.');
      if (tokens.length !== 4 || tokens[0] !== prefix) return undefined;
      const lane = tokens[1] === 'evt' ? 'normal' : tokens[1] === 'crisis' ? 'crisis' : undefined;
      return lane && { lane, userId: tokens[2]!, type: tokens[3]! };
    },
  };
}

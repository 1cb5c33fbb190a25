/**
 * The producer's API: typed functions for the services that feed the runtime. Each event is
 * validated by its schema before it leaves (an invalid one never reaches NATS), published with its
 * id as `Nats-Msg-Id` (a retried publish is stored once), with a bounded number of publishes in
 * flight (callers wait when it is full), and fails with a {@link PublishError} the caller can act on.
 *
 * Assessments are scored here, at the producer: a completed assessment goes to the normal lane, and
 * when it calls for a crisis a `crisis_detected` follows on the crisis lane at once, so the crisis
 * never waits behind the normal lane. The runtime scores again (the statechart's guard), so a
 * producer that skips this client cannot skip the crisis either.
 */
import { randomUUID } from 'node:crypto';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { assessmentCrisisLevel, type CrisisLevel } from '../machines/crisis.ts';
import { UserEvent, type EmergencyContact, type SafetyPlan, type UserEventType } from '../machines/events.ts';
import { scoreAssessment, type Instrument, type Score } from '../machines/scoring.ts';
import { CodecError } from '../transport/codec.ts';
import { permissionViolation } from '../transport/errors.ts';
import { publishEvent } from '../transport/eventPublisher.ts';
import { createTopology, type Topology } from '../transport/topology.ts';

/**
 * Why a publish failed. `invalid`: fix the event; `forbidden`: this service's role may not publish
 * that event kind (README "Security model"); `unavailable`: NATS refused or timed out, retry later.
 */
export type PublishErrorCode = 'invalid' | 'forbidden' | 'unavailable';

/** A publish that did not happen. */
export class PublishError extends Error {
  override readonly name = 'PublishError';
  readonly code: PublishErrorCode;
  /** The offending field, for `invalid`. */
  readonly field: string | undefined;
  /** Whether the same call may succeed later. */
  readonly retryable: boolean;
  constructor(code: PublishErrorCode, message: string, field?: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.field = field;
    this.retryable = code === 'unavailable';
  }
}

/** Options of {@link FullmindPublisher}. */
export interface PublisherOptions {
  topology?: Topology;
  /** Publishes awaiting JetStream's acknowledgement at once; more callers wait. */
  maxInFlight?: number;
  /** How long one publish attempt waits for JetStream. @default 5000 */
  timeoutMs?: number;
  /** How long a publish is retried through transient failures (a leader election), with the same id. @default 10000 */
  retryForMs?: number;
}

/** Fields every publish function accepts: an id (generated when omitted) and the source time. */
export interface Envelope {
  id?: string;
  at?: number;
}

/** An event as a caller writes it: `id` and `at` may be left out. */
export type EventDraft = UserEvent extends infer E ? (E extends UserEvent ? Omit<E, 'id' | 'at'> & Envelope : never) : never;

/** Publishes domain events for other services. */
export class FullmindPublisher {
  private readonly js: JetStreamClient;
  private readonly topology: Topology;
  private readonly maxInFlight: number;
  private readonly retryForMs: number;
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(nc: NatsConnection, options: PublisherOptions = {}) {
    this.js = jetstream(nc, { timeout: options.timeoutMs ?? 5_000 });
    this.topology = options.topology ?? createTopology();
    this.maxInFlight = options.maxInFlight ?? 256;
    this.retryForMs = options.retryForMs ?? 10_000;
  }

  /** A payment event (normally from the Stripe ingress). */
  payment(event: Extract<EventDraft, { subscriptionId: string }>): Promise<void> {
    return this.publish(event);
  }

  /** A completed assessment; a score that calls for a crisis also raises `crisis_detected` on the crisis lane. */
  async assessmentCompleted(input: { userId: string; instrument: Instrument; answers: number[] } & Envelope): Promise<Score> {
    const event = this.validate(this.envelope({ type: 'assessment_completed' as const, ...input }));
    const score = scoreAssessment(input.instrument, input.answers);
    const level = assessmentCrisisLevel(score);
    await Promise.all([
      this.publish(event as EventDraft),
      level && this.crisisDetected({ userId: input.userId, source: 'assessment', level, id: `${event.id}.crisis`, at: event.at }),
    ]);
    return score;
  }

  /** The crisis button on a device. */
  crisisButton(input: { userId: string; deviceId?: string } & Envelope): Promise<void> {
    return this.publish({ type: 'crisis_button', ...input });
  }

  /** A crisis detected by an assessment service or declared by a clinician. */
  crisisDetected(input: { userId: string; source: 'assessment' | 'clinician'; level: CrisisLevel } & Envelope): Promise<void> {
    return this.publish({ type: 'crisis_detected', ...input });
  }

  /** A crisis ended by a clinician or by the user's safety check-in. */
  crisisResolved(input: { userId: string; by: 'clinician' | 'safety_check_in' } & Envelope): Promise<void> {
    return this.publish({ type: 'crisis_resolved', ...input });
  }

  /** A device joins the user's account. */
  registerDevice(input: { userId: string; deviceId: string; platform: 'ios' | 'android' | 'web' } & Envelope): Promise<void> {
    return this.publish({ type: 'device_registered', ...input });
  }

  /** A device leaves the user's account. */
  removeDevice(input: { userId: string; deviceId: string } & Envelope): Promise<void> {
    return this.publish({ type: 'device_removed', ...input });
  }

  /** The user's safety plan changed. */
  safetyPlan(input: { userId: string; plan: SafetyPlan } & Envelope): Promise<void> {
    return this.publish({ type: 'safety_plan_updated', ...input });
  }

  /** The user's emergency contacts changed. */
  emergencyContacts(input: { userId: string; contacts: EmergencyContact[] } & Envelope): Promise<void> {
    return this.publish({ type: 'emergency_contacts_updated', ...input });
  }

  /** Links the user to their Stripe customer, for webhooks whose metadata names no user. */
  linkCustomer(input: { userId: string; customerId: string } & Envelope): Promise<void> {
    return this.publish({ type: 'customer_linked', ...input });
  }

  /** Publishes any domain event (validated like the rest). */
  async publish(draft: EventDraft): Promise<void> {
    const event = this.validate(this.envelope(draft));
    await this.slot();
    try {
      await publishEvent(this.js, this.topology.subjects, event, { retryForMs: this.retryForMs });
    } catch (err) {
      const code = permissionViolation(err) ? 'forbidden' : 'unavailable';
      throw new PublishError(code, `NATS did not store ${event.type} ${event.id}: ${(err as Error).message}`, undefined, { cause: err });
    } finally {
      this.release();
    }
  }

  private envelope<T extends { type: UserEventType }>(partial: T & Envelope): T & { id: string; at: number } {
    return { ...partial, id: partial.id ?? `${partial.type}-${randomUUID()}`, at: partial.at ?? Date.now() };
  }

  private validate(candidate: unknown): UserEvent {
    const result = UserEvent.safeParse(candidate);
    if (result.success) return result.data;
    const issue = result.error.issues[0]!;
    const field = issue.path.join('.') || undefined;
    throw new PublishError('invalid', new CodecError('invalid', issue.message, field).message, field);
  }

  private async slot(): Promise<void> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.inFlight--;
  }
}

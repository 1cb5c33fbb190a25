/**
 * JetStream publishes without a request per message. nats.js's `js.publish` is a request: options
 * parsed and copied, a header object, a mux entry and a timer for every message, about 40 µs of CPU
 * each. A {@link StreamWriter} sends each message with `nc.publish` and a reply subject under one
 * wildcard inbox subscription, keeps what waits for its PubAck in a map, and times them out with one
 * interval timer. Publishes from many users' commits in flight together then share the connection's
 * writes (nats.js flushes what was published in the same turn as one write) and its one subscription.
 *
 * Failures are nats.js's own classes, built as `js.publish` builds them, so `isTransient`
 * (transport/errors.ts) and the wrong-last-sequence check of the user store classify them unchanged.
 */
import { jserrors } from '@nats-io/jetstream/internal';
import { JetStreamApiError, JetStreamError, PubHeaders, type ApiError, type PubAck, type ScheduleOptions, type StreamExpectations } from '@nats-io/jetstream';
import {
  createInbox,
  headers as natsHeaders,
  NoRespondersError,
  RequestError,
  TimeoutError,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Payload,
  type Subscription,
} from '@nats-io/transport-node';
import { onReconnect } from './connection.ts';

/** Options of a {@link StreamWriter}. */
export interface StreamWriterOptions {
  /**
   * How long a publish waits for its PubAck before it rejects with a `TimeoutError`.
   * @default 5000, as nats.js's JetStream client
   */
  timeoutMs: number;
  /**
   * Prefix of the writer's reply inbox, for accounts that allow subscribing only under one.
   * @default nats.js's `_INBOX`
   */
  inboxPrefix?: string;
}

/** Defaults of {@link StreamWriterOptions}. */
export const DEFAULT_STREAM_WRITER_OPTIONS: Readonly<StreamWriterOptions> = { timeoutMs: 5_000 };

/** The part of nats.js's `JetStreamPublishOptions` the runtime uses, with the same names and headers. */
export interface StreamPublishOptions {
  /** `Nats-Msg-Id`: the stream stores a message once per id within its duplicate window. */
  msgID?: string;
  /** Stored only if the stream's (`lastSequence`) or the subject's (`lastSubjectSequence`) last sequence is this. */
  expect?: Partial<Pick<StreamExpectations, 'lastSequence' | 'lastSubjectSequence'>>;
  /** Store the message as a schedule that publishes it to `target` at `specification` (`Date`: `@at`). */
  schedule?: Pick<ScheduleOptions, 'target'> & { specification: Date | string };
  /** Headers of the message. The writer adds its own to this object, as nats.js does: pass one per publish. */
  headers?: MsgHdrs;
}

/** A publish that was pending when its connection reconnected: it may or may not be stored. Transient. */
export class ReplyLostError extends Error {
  override readonly name = 'ReplyLostError';
  constructor(subject: string) {
    super(`publish to ${subject}: the connection reconnected before its PubAck came`);
  }
}

/** A publish of a closed writer, or of one whose connection closed, rejects with this. */
export class StreamWriterClosedError extends Error {
  override readonly name = 'StreamWriterClosedError';
  constructor(reason: string, options?: ErrorOptions) {
    super(`stream writer closed: ${reason}`, options);
  }
}

/** A publish waiting for its PubAck. */
interface Pending {
  subject: string;
  /** `performance.now()` after which it times out. */
  expires: number;
  resolve(ack: PubAck): void;
  reject(err: unknown): void;
}

/** A publish times out at most this fraction of its timeout late: the sweep runs this often per timeout. */
const SWEEPS_PER_TIMEOUT = 10;
/** Status of the server's reply to a request no subscription received. */
const NO_RESPONDERS = 503;

/** Publishes to JetStream streams over one connection, one reply subscription and one timer. */
export class StreamWriter {
  private readonly nc: NatsConnection;
  private readonly timeoutMs: number;
  /** `<inbox>.`: reply subjects are this and a publish number. */
  private readonly replyPrefix: string;
  private readonly sub: Subscription;
  private readonly sweeper: NodeJS.Timeout;
  /** In publish order, hence in order of `expires`. */
  private readonly pending = new Map<number, Pending>();
  private published = 0;
  private closedBy: StreamWriterClosedError | undefined;
  private readonly unwatch: () => void;

  constructor(nc: NatsConnection, options: Partial<StreamWriterOptions> = {}) {
    const { timeoutMs, inboxPrefix } = { ...DEFAULT_STREAM_WRITER_OPTIONS, ...options };
    this.nc = nc;
    this.timeoutMs = timeoutMs;
    const inbox = createInbox(inboxPrefix);
    this.replyPrefix = `${inbox}.`;
    // An error in the callback (a permission violation) also ends the subscription: see below.
    this.sub = nc.subscribe(`${inbox}.*`, {
      callback: (err, msg) => {
        if (!err) this.settle(msg);
      },
    });
    // The subscription ends with the connection: nothing would answer what is still pending.
    void this.sub.closed.then((err) => this.end(new StreamWriterClosedError('its subscription ended', { cause: err })));
    this.sweeper = setInterval(() => this.sweep(), timeoutMs / SWEEPS_PER_TIMEOUT).unref();
    this.unwatch = onReconnect(nc, () => this.failPending());
  }

  /**
   * A publish pending when the connection dropped may never be answered: its message or its PubAck
   * was lost with the connection, or reached the server before the reply subscription was made
   * again (seen: a publish waited out its whole timeout after a server restart). Each is failed as
   * transient at once, so its caller sends it again (every write of the runtime is idempotent).
   */
  private failPending(): void {
    for (const p of this.pending.values()) p.reject(new ReplyLostError(p.subject));
    this.pending.clear();
  }

  /** Publishes `data` to `subject`; resolves with the stream's PubAck once it is stored. */
  publish(subject: string, data: Payload, options?: StreamPublishOptions): Promise<PubAck> {
    if (this.closedBy) return Promise.reject(this.closedBy);
    const n = ++this.published;
    try {
      this.nc.publish(subject, data, { reply: this.replyPrefix + n, headers: options && publishHeaders(options) });
    } catch (err) {
      return Promise.reject(err);
    }
    const { promise, resolve, reject } = Promise.withResolvers<PubAck>();
    this.pending.set(n, { subject, expires: performance.now() + this.timeoutMs, resolve, reject });
    return promise;
  }

  /** Publishes still waiting for their PubAck. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Stops the writer: unsubscribes, and rejects what is pending and any later publish. Idempotent. */
  close(): void {
    if (this.closedBy) return;
    this.end(new StreamWriterClosedError('close() was called'));
    this.sub.unsubscribe();
  }

  private settle(msg: Msg): void {
    const n = Number(msg.subject.slice(this.replyPrefix.length));
    const p = this.pending.get(n);
    // Already timed out: a late PubAck has no one to tell.
    if (!p) return;
    this.pending.delete(n);
    try {
      p.resolve(toPubAck(msg, p.subject));
    } catch (err) {
      p.reject(err);
    }
  }

  private sweep(): void {
    const now = performance.now();
    for (const [n, p] of this.pending) {
      if (p.expires > now) return;
      this.pending.delete(n);
      p.reject(new TimeoutError());
    }
  }

  private end(reason: StreamWriterClosedError): void {
    if (this.closedBy) return;
    this.closedBy = reason;
    clearInterval(this.sweeper);
    this.unwatch();
    for (const p of this.pending.values()) p.reject(reason);
    this.pending.clear();
  }
}

/** The headers a publish needs (none for a plain one), named and formatted as nats.js 3.4 does. */
function publishHeaders({ headers, msgID, expect, schedule }: StreamPublishOptions): MsgHdrs | undefined {
  if (!msgID && !expect && !schedule) return headers;
  const h = headers ?? natsHeaders();
  if (msgID) h.set(PubHeaders.MsgIdHdr, msgID);
  if (typeof expect?.lastSequence === 'number') h.set(PubHeaders.ExpectedLastSeqHdr, `${expect.lastSequence}`);
  if (typeof expect?.lastSubjectSequence === 'number') h.set(PubHeaders.ExpectedLastSubjectSequenceHdr, `${expect.lastSubjectSequence}`);
  if (schedule) {
    const spec = schedule.specification;
    h.set(PubHeaders.Schedule, typeof spec === 'string' ? spec : `@at ${spec.toISOString()}`);
    h.set(PubHeaders.ScheduleTarget, schedule.target);
  }
  return h;
}

/**
 * The PubAck in a reply, or the error `js.publish` throws for it: no responders (no stream captures
 * the subject) as `JetStreamNotEnabled` caused by a `RequestError` caused by `NoRespondersError`;
 * a refusal as `JetStreamApiError` (nats.js's other subclasses are for API requests, not PubAcks).
 */
function toPubAck(msg: Msg, subject: string): PubAck {
  if (msg.data.length === 0 && msg.headers?.code === NO_RESPONDERS) {
    const cause = new NoRespondersError(subject);
    throw new jserrors.JetStreamNotEnabled('jetstream is not enabled', { cause: new RequestError(cause.message, { cause }) });
  }
  const reply = msg.json<PubAck & { error?: ApiError }>();
  if (reply.error) throw new JetStreamApiError(reply.error);
  if (!reply.stream) throw new JetStreamError('invalid ack response');
  reply.duplicate ??= false;
  return reply;
}

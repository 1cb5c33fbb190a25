/**
 * The stream writer against a real nats-server: PubAcks, dedup, the expected-sequence fence,
 * schedules, many publishes in flight, and failures as the same nats.js classes `js.publish` throws
 * (no responders, a refusal, a timeout), so the runtime's classification holds for either.
 */
import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, headers, TimeoutError, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTransient } from '../../transport/errors.ts';
import { ReplyLostError, StreamWriter, StreamWriterClosedError } from '../../transport/streamWriter.ts';
import { asRuntime, useNatsServer } from '../support/nats-server.ts';

const server = useNatsServer();
const STREAM = 'WRITER';
let nc: NatsConnection;
let jsm: JetStreamManager;
let js: JetStreamClient;
let writer: StreamWriter;

beforeAll(async () => {
  nc = await connect({ ...asRuntime(), servers: server().url });
  jsm = await jetstreamManager(nc);
  js = jetstream(nc);
  await jsm.streams.add({ name: STREAM, subjects: ['w.>', 'sched.>', 'fired.>'], allow_msg_schedules: true });
  writer = new StreamWriter(nc);
});
afterAll(async () => {
  writer?.close();
  await nc?.close();
});

/** The error and its causes, by class: what a classification of it can see. */
function causeChain(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e instanceof Error; e = e.cause) chain.push(e.constructor);
  return chain;
}

/** What the promise rejects with; fails the test if it resolves. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (value) => expect.fail(`resolved with ${JSON.stringify(value)}`),
    (err: unknown) => err,
  );
}

/** A core subscriber that never answers: a publish to its subject neither gets a PubAck nor no responders. */
function silentSubject(subject: string): () => void {
  const sub = nc.subscribe(subject, { callback: () => {} });
  return () => sub.unsubscribe();
}

describe('StreamWriter', () => {
  it('resolves with the PubAck of the stored message', async () => {
    const first = await writer.publish('w.seq', 'one');
    const second = await writer.publish('w.seq', 'two');
    expect(first).toMatchObject({ stream: STREAM, duplicate: false });
    expect(second.seq).toBe(first.seq + 1);
    const stored = await jsm.streams.getMessage(STREAM, { seq: second.seq });
    expect(stored?.subject).toBe('w.seq');
    expect(stored?.string()).toBe('two');
    expect(stored?.header.keys() ?? []).toEqual([]);
  });

  it('stores a message id once and reports the second publish as a duplicate', async () => {
    const first = await writer.publish('w.dedup', 'x', { msgID: 'audit:1' });
    const again = await writer.publish('w.dedup', 'x', { msgID: 'audit:1' });
    expect(first.duplicate).toBe(false);
    expect(again).toMatchObject({ seq: first.seq, duplicate: true });
  });

  it('adds its headers to the caller headers', async () => {
    const h = headers();
    h.set('Content-Encoding', 'deflate');
    const ack = await writer.publish('w.headers', 'x', { headers: h, msgID: 'view:1' });
    const stored = await jsm.streams.getMessage(STREAM, { seq: ack.seq });
    expect(stored?.header.get('Content-Encoding')).toBe('deflate');
    expect(stored?.header.get('Nats-Msg-Id')).toBe('view:1');
  });

  it('stores under the expected subject sequence and refuses another as a wrong last sequence', async () => {
    const created = await writer.publish('w.fence', 'v1', { expect: { lastSubjectSequence: 0 } });
    const updated = await writer.publish('w.fence', 'v2', { expect: { lastSubjectSequence: created.seq } });
    expect(updated.seq).toBeGreaterThan(created.seq);

    const err = await rejection(writer.publish('w.fence', 'stale', { expect: { lastSubjectSequence: created.seq } }));
    expect(err).toBeInstanceOf(JetStreamApiError);
    expect((err as JetStreamApiError).code).toBe(JetStreamApiCodes.StreamWrongLastSequence);
    expect(isTransient(err)).toBe(false);
    expect(causeChain(err)).toEqual(
      causeChain(await rejection(js.publish('w.fence', 'stale', { expect: { lastSubjectSequence: created.seq } }))),
    );
  });

  it('checks the expected stream sequence', async () => {
    const { seq } = await writer.publish('w.last', 'x');
    await expect(writer.publish('w.last', 'y', { expect: { lastSequence: seq } })).resolves.toMatchObject({ seq: seq + 1 });
    const err = await rejection(writer.publish('w.last', 'z', { expect: { lastSequence: seq } }));
    expect(err).toBeInstanceOf(JetStreamApiError);
  });

  it('rejects a subject no stream captures as no responders, transient as with js.publish', async () => {
    const err = await rejection(writer.publish('nostream.x', 'x'));
    expect(isTransient(err)).toBe(true);
    expect(causeChain(err)).toEqual(causeChain(await rejection(js.publish('nostream.x', 'x'))));
  });

  it('rejects with a TimeoutError when no PubAck comes', async () => {
    const unsubscribe = silentSubject('silent.timeout');
    const quick = new StreamWriter(nc, { timeoutMs: 200 });
    try {
      const err = await rejection(quick.publish('silent.timeout', 'x'));
      expect(err).toBeInstanceOf(TimeoutError);
      expect(isTransient(err)).toBe(true);
      expect(quick.inFlight).toBe(0);
    } finally {
      quick.close();
      unsubscribe();
    }
  });

  it('stores a schedule that fires onto its target', async () => {
    const at = new Date(Date.now() + 300);
    const ack = await writer.publish('sched.u1', 'due', { msgID: 'deadline:u1', schedule: { specification: at, target: 'fired.u1' } });
    const stored = await jsm.streams.getMessage(STREAM, { seq: ack.seq });
    expect(stored?.header.get('Nats-Schedule')).toBe(`@at ${at.toISOString()}`);
    expect(stored?.header.get('Nats-Schedule-Target')).toBe('fired.u1');

    const fired = await (await js.consumers.get(STREAM, { filter_subjects: ['fired.u1'] })).next({ expires: 10_000 });
    expect(fired?.subject).toBe('fired.u1');
    expect(fired?.string()).toBe('due');
    expect(fired?.headers?.get('Nats-Scheduler')).toBe('sched.u1');
  });

  it('resolves 2,000 concurrent publishes, each with its own sequence', async () => {
    const acks = await Promise.all(Array.from({ length: 2_000 }, (_, i) => writer.publish(`w.many.${i % 50}`, `m${i}`)));
    const seqs = new Set(acks.map((a) => a.seq));
    expect(seqs.size).toBe(2_000);
    expect(Math.max(...seqs) - Math.min(...seqs)).toBe(1_999);
    expect(writer.inFlight).toBe(0);
  });

  it('rejects pending and later publishes once closed', async () => {
    const unsubscribe = silentSubject('silent.close');
    const closing = new StreamWriter(nc);
    try {
      const pending = rejection(closing.publish('silent.close', 'x'));
      closing.close();
      expect(await pending).toBeInstanceOf(StreamWriterClosedError);
      expect(await rejection(closing.publish('w.after', 'x'))).toBeInstanceOf(StreamWriterClosedError);
      expect(closing.inFlight).toBe(0);
    } finally {
      unsubscribe();
    }
  });

  it('rejects pending publishes when its connection closes', async () => {
    const own = await connect({ ...asRuntime(), servers: server().url });
    const unsubscribe = silentSubject('silent.conn');
    try {
      await nc.flush();
      const ownWriter = new StreamWriter(own);
      const pending = rejection(ownWriter.publish('silent.conn', 'x'));
      await own.close();
      expect(await pending).toBeInstanceOf(StreamWriterClosedError);
    } finally {
      unsubscribe();
    }
  });
});

describe('StreamWriter across a reconnect', () => {
  it('fails what was pending when the connection came back as transient, at once, not after its timeout', async () => {
    const own = await connect({ ...asRuntime(), servers: server().url, reconnectTimeWait: 100 });
    const patient = new StreamWriter(own, { timeoutMs: 60_000 });
    try {
      // Never answered: without the reconnect it would wait out the whole minute.
      const stopListening = silentSubject('silent.lost');
      await nc.flush();
      const pending = rejection(patient.publish('silent.lost', 'lost'));
      await own.flush();
      const restarted = performance.now();
      await server().restart();
      const err = await pending;
      stopListening();
      expect(err).toBeInstanceOf(ReplyLostError);
      expect(isTransient(err)).toBe(true);
      expect(performance.now() - restarted).toBeLessThan(30_000);
      // The writer goes on working after it.
      expect((await patient.publish('w.after', 'ok')).stream).toBe(STREAM);
    } finally {
      patient.close();
      await own.close();
    }
  });
});

/**
 * Fuzzing the lanes (issue 13), on a real nats-server and a runtime node process: arbitrary bodies
 * (see `fuzz.ts`) published to both lanes' event subjects (known and arbitrary users and types),
 * with the histories of a few users interleaved. Every bad body becomes exactly one dead letter
 * with the codec's reason; every valid event is applied once, in order; the node stays up.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UserEvent } from '../../machines/events.ts';
import { CodecError, decode } from '../../transport/codec.ts';
import { SENSITIVE_EVENT_TYPES } from '../../transport/deadLetters.ts';
import { DEAD_LETTER_RAW_BYTES, type DeadLetterReason } from '../../transport/schemas.ts';
import type { Subjects } from '../../transport/subjects.ts';
import { FUZZ_SEED, interleave, largeEventBody, laneSubject, smallEventBody } from '../support/fuzz.ts';
import { expectAuditOf, expectFoldOf, historyOf } from '../support/histories.ts';
import { waitFor } from '../support/processes.ts';
import { lanesSettled } from '../support/settle.ts';
import { useSystem } from '../support/system.ts';

/** Bad bodies published (before the few that happen to be valid are set aside). */
const BODIES = 60_000;
/** Users whose histories (10 events each, half of them with a crisis) go in between. */
const USERS = Array.from({ length: 6 }, (_, i) => `fuzz-user-${i}`);
/** Publishes awaiting JetStream's acknowledgement at once. */
const WINDOW = 256;

const system = useSystem();

/** A message the lanes must refuse: where it went, what it is, and the dead letter reason it earns. */
interface Bad {
  subject: string;
  kind: string;
  body: Uint8Array;
  reason: DeadLetterReason;
}

/** What the node makes of a message (`RuntimeNode.receive`): the reason it refuses it, or none. */
function refusal(subjects: Subjects, subject: string, body: Uint8Array): DeadLetterReason | undefined {
  const parsed = subjects.parseEvent(subject)!;
  try {
    return decode(UserEvent, body, { userId: parsed.userId }).type === parsed.type ? undefined : 'invalid';
  } catch (err) {
    if (err instanceof CodecError) return err.code;
    throw err;
  }
}

/** A dead letter's identity for comparing multisets: reason, subject and size. */
const key = (reason: string, subject: string, size: number | null) => `${reason} ${subject} ${size}`;
const keyOf = (b: Bad) => key(b.reason, b.subject, b.body.byteLength);
const digest = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** The multiset `a` less `b`: what `a` holds more often than `b`. */
function without(a: readonly string[], b: readonly string[]): string[] {
  const left = new Map<string, number>();
  for (const k of b) left.set(k, (left.get(k) ?? 0) + 1);
  return a.filter((k) => {
    const n = left.get(k) ?? 0;
    left.set(k, n - 1);
    return n <= 0;
  });
}

describe('lane fuzzing', () => {
  it(`${BODIES.toLocaleString('en')} arbitrary bodies on both lanes, valid histories in between: one dead letter each, every valid event applied`, { timeout: 300_000 }, async () => {
    const { client, runtime } = system();
    const { subjects } = client.topology;
    // One large body (a huge string, deep nesting) in 200: each is up to 500 KiB on the wire.
    const body = fc.oneof({ arbitrary: smallEventBody, weight: 199 }, { arbitrary: largeEventBody, weight: 1 });
    const bad: Bad[] = fc
      .sample(fc.tuple(laneSubject(subjects, USERS), body), { numRuns: BODIES, seed: FUZZ_SEED })
      .flatMap(([subject, { kind, body }]) => {
        const reason = refusal(subjects, subject, body);
        return reason ? [{ subject, kind, body, reason }] : [];
      });
    const start = Date.now();
    const histories = new Map(USERS.map((u, i) => [u, historyOf(u, i, start, { crisis: i % 2 === 0 })]));
    const valid = [...histories.values()].flat().sort((a, b) => a.at - b.at);

    const started = performance.now();
    // A user's events in their order: each is acknowledged before the next is published.
    await interleave(bad, valid, WINDOW, { bad: (b) => client.publishRaw(b.subject, b.body), valid: (e) => client.publish(e) });
    const published = performance.now();
    // Counted as each letter is started; a message is acknowledged once its letter is stored.
    await waitFor(async () => (await client.metrics()).deadLetters >= bad.length, `${bad.length} dead letters`, 240_000);
    await lanesSettled(client);
    const settled = performance.now();
    const reasons = Object.groupBy(bad, (b) => `${b.kind}: ${b.reason}`);
    console.log(
      `lane fuzzing: ${bad.length} bad bodies (${BODIES - bad.length} valid by chance, not sent) and ${valid.length} events published in ` +
        `${((published - started) / 1000).toFixed(1)} s, all settled ${((settled - published) / 1000).toFixed(1)} s later; bad bodies by kind and reason:`,
      Object.fromEntries(Object.entries(reasons).map(([k, v]) => [k, v!.length]).sort()),
    );

    // Still up, answering, holding every partition, and it counted what it did.
    expect(runtime.running).toBe(true);
    const metrics = await client.metrics();
    expect(metrics.partitionsHeld).toBe(client.topology.options.partitions);
    // At least one attempt per bad body: a message delivered again (its ack wait passed under the
    // flood, or its partition re-taken) is tried again, and stored once (its Nats-Msg-Id).
    expect(metrics.deadLetters).toBeGreaterThanOrEqual(bad.length);

    // Exactly one dead letter per bad body, with the codec's reason; none for anything valid.
    const letters = await client.deadLetters();
    const letterKeys = letters.map((l) => key(l.reason, l.subject, l.size));
    expect({ missing: without(bad.map(keyOf), letterKeys), extra: without(letterKeys, bad.map(keyOf)) }).toEqual({ missing: [], extra: [] });
    const sent = new Map<string, Set<string>>();
    for (const b of bad) sent.set(keyOf(b), (sent.get(keyOf(b)) ?? new Set()).add(digest(b.body.subarray(0, DEAD_LETTER_RAW_BYTES))));
    for (const l of letters) {
      // Personal content is never kept (see `deadLetters.ts`); what is kept is the body as sent, or its first 16 KiB.
      expect(l.redacted, l.subject).toBe(l.raw === null);
      if (SENSITIVE_EVENT_TYPES.has(subjects.parseEvent(l.subject)!.type)) expect(l.raw, l.subject).toBeNull();
      if (l.raw !== null) expect(sent.get(key(l.reason, l.subject, l.size))!.has(digest(l.raw)), `${l.subject}: raw is the body sent`).toBe(true);
    }

    // Every valid event applied once, each lane in order, and audited as the statechart's fold says.
    const audit = await client.audit();
    for (const [u, events] of histories) {
      const fold = expectFoldOf(u, await client.userRecord(u), events);
      expectAuditOf(
        u,
        audit.filter((a) => a.userId === u),
        fold,
      );
    }
    expect(metrics.events).toBe(valid.length);
  });
});

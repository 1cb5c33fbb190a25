/**
 * Fuzzing the codec (issue 13): 100,000 arbitrary bodies (bytes, msgpack values, valid events
 * truncated, bit-flipped, given a field of the wrong type, a huge string or deep nesting) decoded
 * as events, as the runtime decodes what a lane delivers. Each is a valid event, or a
 * `CodecError` whose code is a dead-letter reason; nothing else is thrown, and the codec's one
 * shared decoder still decodes a valid event after any of them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UserEvent } from '../../machines/events.ts';
import { CodecError, decode, encode, MAX_BODY_BYTES } from '../../transport/codec.ts';
import { DEAD_LETTER_REASONS } from '../../transport/schemas.ts';
import { eventBody, FUZZ_SEED } from '../support/fuzz.ts';
import { EVENTS } from '../transport/fixtures.ts';

const BODIES = 100_000;
const REASONS: ReadonlySet<string> = new Set(DEAD_LETTER_REASONS);

describe('codec fuzzing', () => {
  it(`${BODIES.toLocaleString('en')} arbitrary bodies: each a valid event or a CodecError with a dead-letter reason`, { timeout: 180_000 }, () => {
    const outcomes = new Map<string, number>();
    fc.assert(
      fc.property(eventBody, fc.constantFrom(undefined, EVENTS[0]!.userId, 'someone-else'), fc.constantFrom(...EVENTS), ({ kind, body }, userId, valid) => {
        let outcome: string;
        try {
          const event = decode(UserEvent, body, { userId });
          expect(body.byteLength).toBeLessThanOrEqual(MAX_BODY_BYTES);
          if (userId !== undefined) expect(event.userId).toBe(userId);
          // What it decoded to is an event in its own right: it encodes and decodes to itself.
          expect(decode(UserEvent, encode(UserEvent, event))).toEqual(event);
          outcome = 'valid';
        } catch (err) {
          if (!(err instanceof CodecError)) throw err;
          expect(REASONS.has(err.code), err.code).toBe(true);
          expect(err.code === 'too_large').toBe(body.byteLength > MAX_BODY_BYTES);
          outcome = err.code;
        }
        outcomes.set(`${kind}: ${outcome}`, (outcomes.get(`${kind}: ${outcome}`) ?? 0) + 1);
        // The decoder is shared by the process: a refused body must not leave it broken.
        expect(decode(UserEvent, encode(UserEvent, valid))).toEqual(valid);
      }),
      { numRuns: BODIES, seed: FUZZ_SEED },
    );
    console.log(`codec fuzzing, ${BODIES} bodies by kind and outcome:`, Object.fromEntries([...outcomes].sort()));
    // Every kind of body reached the codec, and every codec refusal came up.
    const kinds = new Set([...outcomes.keys()].map((k) => k.split(':')[0]));
    expect(kinds.size).toBe(7);
    const codes = new Set([...outcomes.keys()].map((k) => k.split(': ')[1]));
    expect([...codes].sort()).toEqual(['invalid', 'malformed', 'too_large', 'user_mismatch', 'valid']);
  });
});

/**
 * What a broken or hostile producer can put on the wire, as fast-check arbitraries, for the fuzz
 * tests (issue 13) of the codec, the lanes and the Stripe webhook: arbitrary bytes, arbitrary
 * msgpack values, and valid events mutated (truncated, bits flipped, a field of the wrong type,
 * huge strings, deep nesting). Most of them are refused; a few mutations stay valid (a flipped bit
 * in a free-text field), which is why the tests ask the codec what each one is.
 */
import { Encoder } from '@msgpack/msgpack';
import fc from 'fast-check';
import { UserEvent, type UserEventType } from '../../machines/events.ts';
import { MAX_BODY_BYTES } from '../../transport/codec.ts';
import type { Lane, Subjects } from '../../transport/subjects.ts';
import { EVENTS } from '../transport/fixtures.ts';

/** Encodes as a producer in any language could: `undefined` as nil, no depth limit of ours. */
const encoder = new Encoder({ maxDepth: 1_000 });
const pack = (value: unknown): Uint8Array => encoder.encode(value);

/** Every event type, and one valid event of each (the seeds of the mutations). */
export const EVENT_TYPES = UserEvent.options.map((o) => o.shape.type.value) as UserEventType[];
const seed = fc.constantFrom(...EVENTS);

/** Any value msgpack can carry: nested objects and arrays, dates, maps, typed arrays, odd numbers. */
export const anyValue = fc.anything({
  withDate: true,
  withMap: true,
  withSet: true,
  withTypedArray: true,
  withSparseArray: true,
  withNullPrototype: true,
  withBoxedValues: true,
  withObjectString: true,
});

/** One of the seed's keys (a key it does not have is dropped: valid, and covered by {@link anyValue}). */
const keyOf = (e: object) => fc.constantFrom(...Object.keys(e));

/** A valid event with one field set to any value, or removed. */
const wrongField = seed.chain((e) =>
  fc.tuple(keyOf(e), fc.option(anyValue, { nil: undefined })).map(([key, value]) => {
    const copy: Record<string, unknown> = { ...e, [key]: value };
    if (value === undefined) delete copy[key];
    return pack(copy);
  }),
);

/** A valid event cut short. */
const truncated = seed.chain((e) => {
  const bytes = pack(e);
  return fc.nat({ max: bytes.length - 1 }).map((n) => bytes.subarray(0, n));
});

/** A valid event with some of its bits flipped. */
const bitFlipped = seed.chain((e) => {
  const bytes = pack(e);
  return fc.array(fc.nat({ max: bytes.length * 8 - 1 }), { minLength: 1, maxLength: 8 }).map((bits) => {
    const out = Uint8Array.from(bytes);
    for (const bit of bits) out[bit >> 3]! ^= 1 << (bit & 7);
    return out;
  });
});

/** A valid event with one field a string from a few KiB to past the size limit (1–4 bytes a character). */
const hugeString = seed.chain((e) =>
  fc
    .tuple(keyOf(e), fc.integer({ min: 4_096, max: MAX_BODY_BYTES + 4_096 }), fc.constantFrom('x', 'é', '€', '😀'))
    .map(([key, length, char]) => pack({ ...e, [key]: char.repeat(Math.ceil(length / Buffer.byteLength(char))) })),
);

/**
 * A valid event with one more field nested `depth` arrays or maps deep, written byte by byte (an
 * encoder refuses such depth, a hostile producer does not): a fixmap header counts the fields.
 */
const deeplyNested = seed.chain((e) =>
  fc.tuple(keyOf(e), fc.integer({ min: 100, max: 20_000 }), fc.constantFrom('array', 'map')).map(([key, depth, kind]) => {
    const { [key]: _replaced, ...rest } = e as unknown as Record<string, unknown>;
    const head = pack(rest);
    head[0]! += 1; // one more field in the fixmap header (every seed has fewer than 15)
    const level = kind === 'array' ? [0x91] : [0x81, 0xa1, 0x61]; // [x] or { a: x }
    const nested = new Uint8Array(depth * level.length + 1);
    nested.set(level);
    for (let filled = level.length; filled < nested.length; filled *= 2) nested.copyWithin(filled, 0, filled);
    nested[nested.length - 1] = 0xc0; // nil at the bottom
    const name = pack(key);
    const body = new Uint8Array(head.length + name.length + nested.length);
    body.set(head);
    body.set(name, head.length);
    body.set(nested, head.length + name.length);
    return body;
  }),
);

/** A body and what kind of body it is (a failure's report names it). */
export interface FuzzBody {
  kind: string;
  body: Uint8Array;
}

/** Small bodies (a few hundred bytes): arbitrary bytes and values, valid events broken a little. */
export const smallEventBody: fc.Arbitrary<FuzzBody> = fc.oneof(
  { arbitrary: tagged('bytes', fc.uint8Array({ maxLength: 512 })), weight: 4 },
  { arbitrary: tagged('value', anyValue.map(pack)), weight: 4 },
  { arbitrary: tagged('wrong field', wrongField), weight: 6 },
  { arbitrary: tagged('truncated', truncated), weight: 3 },
  { arbitrary: tagged('bit flipped', bitFlipped), weight: 4 },
);

/** Large bodies (4 KiB to 500 KiB): a huge string, deep nesting. */
export const largeEventBody: fc.Arbitrary<FuzzBody> = fc.oneof(tagged('huge string', hugeString), tagged('deeply nested', deeplyNested));

/** Arbitrary event bodies, weighted so each kind comes up thousands of times in 100,000. */
export const eventBody: fc.Arbitrary<FuzzBody> = fc.oneof({ arbitrary: smallEventBody, weight: 21 }, { arbitrary: largeEventBody, weight: 2 });

/** A NATS subject token other than a wildcard: printable ASCII without '.', '*' or '>'. */
const subjectToken = fc.stringMatching(/^[\x21-\x29\x2b-\x2d\x2f-\x3d\x3f-\x7e]{1,24}$/);

/**
 * A subject a lane's stream takes (`fm.evt.*.*`, `fm.crisis.*.*`): one of `users`, the seeds' own
 * user (whose bodies then fail on their content, not on the user) or any token as the user, an
 * event type (of either lane) or any token as the type.
 */
export function laneSubject(subjects: Subjects, users: readonly string[]): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.constantFrom<Lane>('normal', 'crisis'),
      fc.oneof(fc.constantFrom(...users, EVENTS[0]!.userId), subjectToken),
      fc.oneof({ arbitrary: fc.constantFrom(...EVENT_TYPES), weight: 3 }, { arbitrary: subjectToken, weight: 1 }),
    )
    .map(([lane, user, type]) => subjects.event(user, type as UserEventType, lane));
}

function tagged(kind: string, body: fc.Arbitrary<Uint8Array>): fc.Arbitrary<FuzzBody> {
  return body.map((b) => ({ kind, body: b }));
}

/** The seed of every fuzz run: fixed, so a run is repeatable (fast-check prints it, and the path, on failure). */
export const FUZZ_SEED = 13;

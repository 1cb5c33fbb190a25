/**
 * What a broken or hostile producer can put on the wire, as fast-check arbitraries, for the fuzz
 * tests (issue 13) of the codec, the lanes and the Stripe webhook: arbitrary bytes, arbitrary
 * msgpack values, and valid events mutated (truncated, bits flipped, a field of the wrong type,
 * huge strings, deep nesting). Most of them are refused; a few mutations stay valid (a flipped bit
 * in a free-text field), which is why the tests ask the codec what each one is.
 */
import { Encoder } from '@msgpack/msgpack';
import fc from 'fast-check';
import Stripe from 'stripe';
import { EventId, SubjectToken, UserEvent, type UserEventType } from '../../machines/events.ts';
import { HANDLED_STRIPE_TYPES } from '../../machines/stripe.ts';
import { MAX_BODY_BYTES } from '../../transport/codec.ts';
import type { Lane, Subjects } from '../../transport/subjects.ts';
import { EVENTS } from '../transport/fixtures.ts';
import { invoice, PRICE_PREMIUM, PRICE_TIERS, stripeEvent, subscription } from './stripe.ts';

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

/** A `Stripe-Signature` header: none, a literal value, or made at send time with a secret, `offsetS` from now. */
export type FuzzSignature = { kind: 'none' } | { kind: 'literal'; header: string } | { kind: 'signed'; secret: string; offsetS: number };

/** A webhook request: body, signature, other headers, and the answer it must get. */
export interface FuzzWebhook {
  kind: string;
  body: string | Uint8Array;
  signature: FuzzSignature;
  headers: Record<string, string>;
  expected: { status: number; body: Record<string, unknown> };
}

/** The `Stripe-Signature` header of a request, made now when it is signed (with the official package). */
export function signatureHeader(signature: FuzzSignature, body: string | Uint8Array): string | undefined {
  switch (signature.kind) {
    case 'none':
      return undefined;
    case 'literal':
      return signature.header;
    case 'signed': {
      const payload = typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
      return Stripe.webhooks.generateTestHeaderString({ payload, secret: signature.secret, timestamp: Math.floor(Date.now() / 1000) + signature.offsetS });
    }
  }
}

/** A header value as HTTP carries it: printable ASCII and spaces, not blank. */
const headerValue = fc.stringMatching(/^[\x21-\x7e][\x20-\x7e]{0,120}$/);

/** Headers a client may add (fetch forbids setting the framing ones), with any values. */
const otherHeaders = fc.dictionary(fc.constantFrom('content-type', 'content-encoding', 'user-agent', 'accept', 'x-forwarded-for', 'x-request-id'), headerValue, {
  maxKeys: 3,
});

/** A Stripe event of a handled type for `user`, as Stripe would send it (a subscription active at a known price, or an invoice). */
const handledEvent = (user: string) =>
  fc.constantFrom(...HANDLED_STRIPE_TYPES).map((type) => {
    const parties = { subscriptionId: `sub_${user}`, customer: `cus_${user.replace(/\W/g, '')}`, metadata: { user_id: user } };
    const object = type.startsWith('invoice.') ? invoice({}, parties) : subscription('active', [PRICE_PREMIUM], parties);
    return stripeEvent(type, object, Math.floor(Date.now() / 1000));
  });

/** Any JSON value that is not a string of length > 0 (what the mapping reads as "no id"). */
const notAnId = fc.jsonValue().filter((v) => typeof v !== 'string' || v.length === 0);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Signed with the right secret, and wrong in shape: each mutation is one the ingress must refuse
 * with a 400 (the event is for `user`, so a mutation that kept it valid would publish it).
 */
function wrongShape(secret: string, user: string): fc.Arbitrary<FuzzWebhook> {
  const refused = (error: string, kind: string, event: fc.Arbitrary<unknown>) =>
    event.map((e): FuzzWebhook => ({ kind, body: JSON.stringify(e), signature: { kind: 'signed', secret, offsetS: 0 }, headers: {}, expected: { status: 400, body: { error } } }));
  const event = handledEvent(user);
  return fc.oneof(
    refused('malformed', 'no id', fc.tuple(event, notAnId).map(([e, id]) => ({ ...e, id }))),
    refused('malformed', 'created not a whole number', fc.tuple(event, fc.jsonValue().filter((v) => !Number.isInteger(v))).map(([e, created]) => ({ ...e, created }))),
    refused('malformed', 'no data.object', fc.tuple(event, fc.jsonValue().filter((v) => !isObject(v) || !isObject(v.object))).map(([e, data]) => ({ ...e, data }))),
    refused(
      'malformed',
      'id not an event id',
      fc.tuple(event, fc.string({ minLength: 1, maxLength: 200, unit: 'binary' }).filter((id) => !EventId.safeParse(id).success)).map(([e, id]) => ({ ...e, id })),
    ),
    refused(
      'malformed',
      'user id not a subject token',
      fc.tuple(fc.string({ minLength: 1, maxLength: 100, unit: 'binary' }).filter((u) => !SubjectToken.safeParse(u).success), fc.constantFrom(...HANDLED_STRIPE_TYPES)).map(([u, type]) => {
        const parties = { subscriptionId: `sub_${user}`, customer: `cus_${user.replace(/\W/g, '')}`, metadata: { user_id: u } };
        return stripeEvent(type, type.startsWith('invoice.') ? invoice({}, parties) : subscription('active', [PRICE_PREMIUM], parties));
      }),
    ),
    refused(
      'unknown_price',
      'unknown price',
      fc.tuple(fc.array(fc.string({ minLength: 1, maxLength: 40 }).filter((p) => !Object.hasOwn(PRICE_TIERS, p)), { maxLength: 3 }), fc.constantFrom('active', 'trialing')).map(([prices, status]) =>
        stripeEvent('customer.subscription.updated', subscription(status, prices, { subscriptionId: `sub_${user}`, metadata: { user_id: user } })),
      ),
    ),
    refused(
      'malformed',
      'any object without data',
      fc.tuple(fc.dictionary(fc.string(), fc.jsonValue()), fc.constantFrom(...HANDLED_STRIPE_TYPES)).map(([o, type]) => {
        const { data: _data, ...rest } = o;
        return { ...rest, type };
      }),
    ),
  );
}

/**
 * Signed, for a customer no link names (any string) and without a user in the metadata: kept as an
 * `unknown_user` dead letter and answered 2xx (Stripe would retry a refusal for days), unless its
 * id cannot be an event id (then it is malformed).
 */
function unknownCustomer(secret: string): fc.Arbitrary<FuzzWebhook> {
  const id = fc.oneof(fc.constant(undefined), fc.string({ minLength: 1, maxLength: 200, unit: 'binary' }));
  return fc.tuple(fc.constantFrom(...HANDLED_STRIPE_TYPES), fc.string({ minLength: 1, maxLength: 100, unit: 'binary' }), id).map(([type, customer, id]): FuzzWebhook => {
    const parties = { subscriptionId: 'sub_fuzz', customer, metadata: {} };
    const e = stripeEvent(type, type.startsWith('invoice.') ? invoice({}, parties) : subscription('active', [PRICE_PREMIUM], parties));
    if (id !== undefined) e.id = id;
    const expected = EventId.safeParse(e.id).success ? { status: 200, body: { received: true, deadLetter: 'unknown_user' } } : { status: 400, body: { error: 'malformed' } };
    return { kind: 'unknown customer', body: JSON.stringify(e), signature: { kind: 'signed', secret, offsetS: 0 }, headers: {}, expected };
  });
}

/**
 * Webhook requests the ingress must refuse, each with the answer it must get: no or a garbage
 * `Stripe-Signature`, a signature by another secret, too old or too far ahead, a valid signature
 * over text that is not JSON or over JSON that is not an event object, a valid signature over an
 * event of a wrong shape (for `user`), and bodies over the ingress's limit; with any other headers.
 */
export function badWebhook(secret: string, user: string, maxBodyBytes: number): fc.Arbitrary<FuzzWebhook> {
  const anyBody = fc.oneof(fc.uint8Array({ maxLength: 2_048 }), fc.string({ maxLength: 512, unit: 'binary' }), handledEvent(user).map((e) => JSON.stringify(e)));
  const eventBody = handledEvent(user).map((e) => JSON.stringify(e));
  const request = (kind: string, body: fc.Arbitrary<string | Uint8Array>, signature: fc.Arbitrary<FuzzSignature>, status: number, error: string) =>
    fc.record({ kind: fc.constant(kind), body, signature, headers: otherHeaders, expected: fc.constant({ status, body: { error } }) });
  const signedNow = fc.constant<FuzzSignature>({ kind: 'signed', secret, offsetS: 0 });
  // Not starting with a byte-order mark, which the package's UTF-8 decoding drops before it checks the signature.
  const notJson = fc.string({ minLength: 1, maxLength: 512, unit: 'binary' }).filter((s) => {
    if (s.startsWith('\uFEFF')) return false;
    try {
      JSON.parse(s);
      return false;
    } catch {
      return true;
    }
  });
  const tooLarge = fc.integer({ min: maxBodyBytes + 1, max: maxBodyBytes + 65_536 }).map((n) => new Uint8Array(n).fill(0x7b));
  return fc.oneof(
    { weight: 4, arbitrary: request('no signature', anyBody, fc.constant<FuzzSignature>({ kind: 'none' }), 400, 'missing_signature') },
    { weight: 4, arbitrary: request('garbage signature', anyBody, headerValue.map((header): FuzzSignature => ({ kind: 'literal', header })), 400, 'bad_signature') },
    {
      weight: 2,
      arbitrary: request(
        'signature of a random digest',
        anyBody,
        fc.uint8Array({ minLength: 32, maxLength: 32 }).map((d): FuzzSignature => ({ kind: 'literal', header: `t=${Math.floor(Date.now() / 1000)},v1=${Buffer.from(d).toString('hex')}` })),
        400,
        'bad_signature',
      ),
    },
    {
      weight: 2,
      arbitrary: request(
        'another secret',
        eventBody,
        fc.string({ minLength: 1, maxLength: 40 }).map((s): FuzzSignature => ({ kind: 'signed', secret: `whsec_${s}`, offsetS: 0 })).filter((s) => s.kind === 'signed' && s.secret !== secret),
        400,
        'bad_signature',
      ),
    },
    { weight: 2, arbitrary: request('stale', eventBody, fc.integer({ min: 310, max: 10 ** 8 }).map((s): FuzzSignature => ({ kind: 'signed', secret, offsetS: -s })), 400, 'stale_timestamp') },
    { weight: 2, arbitrary: request('future', eventBody, fc.integer({ min: 310, max: 10 ** 8 }).map((s): FuzzSignature => ({ kind: 'signed', secret, offsetS: s })), 400, 'future_timestamp') },
    { weight: 4, arbitrary: request('signed, not JSON', notJson, signedNow, 400, 'malformed_json') },
    { weight: 2, arbitrary: request('signed, JSON but not an object', fc.jsonValue().filter((v) => !isObject(v)).map((v) => JSON.stringify(v)), signedNow, 400, 'malformed_json') },
    { weight: 8, arbitrary: wrongShape(secret, user) },
    { weight: 2, arbitrary: unknownCustomer(secret) },
    { weight: 1, arbitrary: request('too large', tooLarge, signedNow, 413, 'too_large') },
  );
}

/**
 * Sends every bad item, at most `window` at once, with the valid ones spread evenly in between, each
 * awaited before anything after it is sent (so valid items go in their order); resolves once all
 * were answered.
 */
export async function interleave<B, V>(
  bad: readonly B[],
  valid: readonly V[],
  window: number,
  send: { bad: (b: B) => Promise<unknown>; valid: (v: V) => Promise<unknown> },
): Promise<void> {
  const validAt = new Set(valid.map((_, k) => Math.floor(((k + 1) * bad.length) / (valid.length + 1))));
  const inFlight = new Set<Promise<unknown>>();
  let next = 0;
  for (const [i, b] of bad.entries()) {
    if (validAt.has(i)) await send.valid(valid[next++]!);
    const p: Promise<unknown> = send.bad(b).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= window) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  for (const v of valid.slice(next)) await send.valid(v);
}

function tagged(kind: string, body: fc.Arbitrary<Uint8Array>): fc.Arbitrary<FuzzBody> {
  return body.map((b) => ({ kind, body: b }));
}

/** The seed of every fuzz run: fixed, so a run is repeatable (fast-check prints it, and the path, on failure). */
export const FUZZ_SEED = 13;

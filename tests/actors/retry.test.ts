/**
 * Which failures are retried (transient, with a log line and a count per retry) and which are
 * thrown at once (terminal); a cancelled retry ends. The errors are the ones nats.js itself throws.
 */
import { Writable } from 'node:stream';
import { JetStreamApiError } from '@nats-io/jetstream';
import { jserrors } from '@nats-io/jetstream/internal';
import { ClosedConnectionError, DrainingConnectionError, InvalidArgumentError, NoRespondersError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { DEFAULT_RUNTIME_CONFIG } from '../../actors/config.ts';
import { RuntimeMetrics } from '../../actors/metrics.ts';
import { retry, type RetryHost } from '../../actors/retry.ts';
import { FencedError } from '../../actors/userStore.ts';
import { CodecError } from '../../transport/codec.ts';
import { isTransient } from '../../transport/errors.ts';

const noResponders = () => new RequestError('503', { cause: new NoRespondersError('$JS.API.STREAM.INFO.FM_EVENTS') });

const TRANSIENT: Array<[string, Error]> = [
  ['a timeout', new TimeoutError()],
  ['no responders', noResponders()],
  ['"jetstream is not enabled" (no responders on the JetStream API)', new jserrors.JetStreamNotEnabled('jetstream is not enabled', { cause: noResponders() })],
  ['JetStream temporarily unavailable (503)', new JetStreamApiError({ err_code: 10008, code: 503, description: 'JetStream system temporarily unavailable' })],
  // A retry after a timeout in an election, while the first attempt is still being stored (seen in the nemesis run).
  ['a publish whose id is still being stored (409)', new JetStreamApiError({ err_code: 10158, code: 409, description: 'duplicate message id is in process' })],
];

const TERMINAL: Array<[string, Error]> = [
  ['a wrong last sequence', new JetStreamApiError({ err_code: 10071, code: 400, description: 'wrong last sequence: 7' })],
  ['a message over the stream limit', new JetStreamApiError({ err_code: 10054, code: 400, description: 'message size exceeds maximum allowed' })],
  ['a payload over max_payload', InvalidArgumentError.format('payload', 'max_payload size exceeded')],
  ['a closed connection', new ClosedConnectionError()],
  ['a draining connection', new DrainingConnectionError()],
  ['a codec error', new CodecError('too_large', '200000 bytes, limit 131072')],
  ['a fence', new FencedError('u1')],
  ['a record that does not parse', new RangeError('Unrecognized type byte: 0xc1')],
];

describe('isTransient', () => {
  it.each(TRANSIENT)('%s is transient', (_, err) => expect(isTransient(err)).toBe(true));
  it.each(TERMINAL)('%s is terminal', (_, err) => expect(isTransient(err)).toBe(false));
});

function host(signal = new AbortController().signal) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const h: RetryHost = { signal, log: pino(sink), metrics: new RuntimeMetrics('test-node'), config: DEFAULT_RUNTIME_CONFIG };
  return { host: h, lines };
}

/** A call that fails with `failures` in turn, then returns `ok`. */
function failing(...failures: Error[]) {
  let calls = 0;
  const fn = () => {
    const err = failures[calls++];
    return err ? Promise.reject(err) : Promise.resolve('ok');
  };
  return { fn, calls: () => calls };
}

describe('retry', () => {
  it('retries transient failures with a log line and a count per retry, backing off', async () => {
    const { host: h, lines } = host();
    const call = failing(new TimeoutError(), noResponders());
    await expect(retry('save user record', call.fn, h)).resolves.toBe('ok');
    expect(call.calls()).toBe(3);
    expect(h.metrics.retries).toBe(2);
    expect(lines.map((l) => [l.msg, l.op, l.attempt, l.delayMs])).toEqual([
      ['transient NATS failure, retrying', 'save user record', 2, 50],
      ['transient NATS failure, retrying', 'save user record', 3, 100],
    ]);
  });

  it.each(TERMINAL)('throws %s at once, without a retry', async (_, err) => {
    const { host: h, lines } = host();
    const call = failing(err);
    await expect(retry('publish output', call.fn, h)).rejects.toBe(err);
    expect(call.calls()).toBe(1);
    expect(h.metrics.retries).toBe(0);
    expect(lines).toEqual([]);
  });

  it('ends with the reason when its caller is cancelled while it waits', async () => {
    const { host: h, lines } = host();
    const cancel = new AbortController();
    const fence = new FencedError('u1');
    const call = failing(...Array<Error>(100).fill(new TimeoutError()));
    const retrying = retry('publish output', call.fn, h, cancel.signal);
    await vi.waitFor(() => expect(lines).toHaveLength(1));
    cancel.abort(fence);
    await expect(retrying).rejects.toBe(fence);
    expect(call.calls()).toBe(1);
    expect(lines.map((l) => l.msg)).toEqual(['transient NATS failure, retrying', 'retry cancelled']);
  });

  it('ends when the node stops', async () => {
    const stop = new AbortController();
    const { host: h } = host(stop.signal);
    stop.abort(new Error('runtime node stopping'));
    const call = failing(new TimeoutError());
    await expect(retry('store dead letter', call.fn, h, new AbortController().signal)).rejects.toThrow('runtime node stopping');
    expect(call.calls()).toBe(1);
  });
});

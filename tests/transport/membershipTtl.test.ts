/**
 * Live members as KV keys that expire (DESIGN §8): a node refreshes its key, and every node's watch
 * learns that a member is gone when its key expires. On nats-server 2.15 with @nats-io/kv 3.4.0 a
 * watch sees an expiry only when the bucket leaves markers (`markerTTL`). Against a real
 * nats-server; waits on what the watch reports, never on time.
 */
import { jetstream } from '@nats-io/jetstream';
import { Kvm, KvWatchInclude, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asRuntime, useNatsServer } from '../support/nats-server.ts';
import { waitFor } from '../support/processes.ts';

const server = useNatsServer();
const TTL_MS = 2_000;
let nc: NatsConnection;
let kvm: Kvm;
beforeAll(async () => {
  nc = await connect({ ...asRuntime(), servers: server().url });
  kvm = new Kvm(nc);
});
afterAll(() => nc?.close());

/** Every entry a bucket's watch reports from now on (`operation key`), until the test ends. */
async function watch(kv: KV): Promise<string[]> {
  const seen: string[] = [];
  const watcher = await kv.watch({ include: KvWatchInclude.UpdatesOnly });
  void (async () => {
    for await (const e of watcher) seen.push(`${e.operation} ${e.key}`);
  })();
  return seen;
}

/** Re-puts a key every quarter of the TTL, as a live member does; returns the stop. */
function heartbeat(kv: KV, key: string): () => void {
  const timer = setInterval(() => void kv.put(key, 'alive'), TTL_MS / 4);
  return () => clearInterval(timer);
}

describe('membership keys with a TTL', () => {
  it('bucket ttl with markers: the watch sees a PURGE for a key not refreshed, none for one refreshed', async () => {
    const kv = await kvm.create('members_marked', { history: 1, ttl: TTL_MS, markerTTL: 5_000 });
    const seen = await watch(kv);
    await kv.put('node-1', 'alive');
    await kv.put('node-2', 'alive');
    const stop = heartbeat(kv, 'node-2');
    try {
      await waitFor(() => seen.includes('PURGE node-1'), 'node-1 to expire', 10_000);
    } finally {
      stop();
    }
    expect(seen).not.toContain('PURGE node-2');
    expect((await kv.get('node-1'))?.operation).toBe('PURGE');
    // keys() still lists a key whose last entry is the expiry marker, while the marker lives.
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    expect(keys.sort()).toEqual(['node-1', 'node-2']);
  });

  it('bucket ttl without markers: a key vanishes and the watch never hears of it', async () => {
    const kv = await kvm.create('members_unmarked', { history: 1, ttl: TTL_MS });
    const seen = await watch(kv);
    await kv.put('node-1', 'alive');
    await waitFor(async () => (await kv.get('node-1')) === null, 'node-1 to expire', 10_000);
    // A later put reaches the watch after anything the expiry could have sent.
    await kv.put('sentinel', 'x');
    await waitFor(() => seen.includes('PUT sentinel'), 'the sentinel');
    expect(seen).toEqual(['PUT node-1', 'PUT sentinel']);
  });

  it('a per-key TTL (Nats-TTL on the bucket subject, refreshable) expires with a PURGE too', async () => {
    const kv = await kvm.create('members_per_key', { history: 1, markerTTL: 5_000 });
    const seen = await watch(kv);
    const js = jetstream(nc);
    // KV's put has no TTL option in @nats-io/kv 3.4.0 (create has, once): publish on the key's subject.
    await js.publish('$KV.members_per_key.node-1', 'alive', { ttl: `${TTL_MS / 1000}s` });
    await js.publish('$KV.members_per_key.node-1', 'alive', { ttl: `${TTL_MS / 1000}s` });
    await waitFor(() => seen.includes('PURGE node-1'), 'node-1 to expire', 10_000);
    expect(seen).toEqual(['PUT node-1', 'PUT node-1', 'PURGE node-1']);
    await expect(kv.create('node-2', 'alive', '2s')).resolves.toBeGreaterThan(0);
  });
});

/**
 * Integration (real nats-server and runtime node): crisis-lane fairness. One device flooding its
 * crisis button cannot delay another user's crisis: the node limits each user's presses where they
 * arrive (`actors/crisisRateLimit.ts`), so user A's 2,000 presses, published without waiting for
 * each other, become `rate_limited` dead letters past A's burst, counted and acknowledged, and
 * user B's crisis on the same partition consumer is applied. Nothing is lost: every press of A is
 * applied or a dead letter, and the first presses always pass. Defaults of the node (10 at once,
 * then 1 a second). Waits on facts (a view, the lanes settled), never on a sleep.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_RUNTIME_CONFIG } from '../../actors/config.ts';
import { partitionOf } from '../../actors/partitions.ts';
import { UserEvent } from '../../machines/events.ts';
import { decode } from '../../transport/codec.ts';
import { event } from '../support/events.ts';
import { waitFor } from '../support/processes.ts';
import { lanesSettled } from '../support/settle.ts';
import { useSystem } from '../support/system.ts';

const system = useSystem();

const FLOODER = 'flood-a';
const PRESSES = 2_000;
const { burst, ratePerS } = DEFAULT_RUNTIME_CONFIG.crisisRateLimit;
const LIMITED_MSG = 'crisis lane rate limit: excess events become dead letters';

/** The first `crisis-b-<n>` filed under the same partition as `userId`: one partition consumer serves both. */
function samePartitionAs(userId: string, partitions: number): string {
  const target = partitionOf(userId, partitions);
  for (let n = 0; ; n++) if (partitionOf(`crisis-b-${n}`, partitions) === target) return `crisis-b-${n}`;
}

/** Whether a user's stored view shows crisis mode. */
async function inCrisis(client: ReturnType<typeof system>['client'], userId: string): Promise<boolean> {
  return (await client.lastView(userId))?.crisis.active === true;
}

describe('crisis-lane fairness', () => {
  it('A floods the crisis button: B’s crisis on the same partition is applied, A’s excess is rate_limited dead letters, nothing is lost', async () => {
    const { client, runtime } = system();
    const other = samePartitionAs(FLOODER, client.topology.options.partitions);
    const before = await client.metrics();
    const started = performance.now();

    const presses = Array.from({ length: PRESSES }, () => event(FLOODER, 'crisis_button', { deviceId: 'phone' }));
    await Promise.all(presses.map((e) => client.publish(e)));
    const crisis = event(other, 'crisis_button', { deviceId: 'tablet' });
    await client.publish(crisis);

    await waitFor(() => inCrisis(client, other), 'B’s crisis view');
    await lanesSettled(client);
    const elapsedMs = performance.now() - started;
    const after = await client.metrics();

    // A's excess: dead letters with the new reason, each a distinct press of A's, raw kept.
    const letters = (await client.deadLetters()).filter((l) => l.reason === 'rate_limited');
    const subject = client.topology.subjects.event(FLOODER, 'crisis_button');
    expect(letters.every((l) => l.subject === subject && !l.redacted)).toBe(true);
    const limitedIds = letters.map((l) => decode(UserEvent, l.raw!).id);
    expect(new Set(limitedIds).size).toBe(letters.length);
    const pressIds = new Set(presses.map((e) => e.id));
    expect(limitedIds.every((id) => pressIds.has(id))).toBe(true);
    // The first presses are never lost: a full bucket lets the burst through in stream order.
    expect(presses.slice(0, burst).some((e) => limitedIds.includes(e.id))).toBe(false);
    expect(limitedIds).not.toContain(crisis.id);

    // Nothing lost: every press applied or dead-lettered, none twice; counted in the metrics.
    const applied = after.events - before.events - 1; // B's crisis is the other one
    expect(after.duplicates - before.duplicates + after.stale - before.stale).toBe(0);
    expect(applied + letters.length).toBe(PRESSES);
    expect(after.crisisRateLimited - before.crisisRateLimited).toBe(letters.length);
    expect(after.deadLetters - before.deadLetters).toBe(letters.length);
    // A correctness bound, not a timing target: at most the burst plus what the rate refilled
    // while the node was deciding (inside this test's own span of time).
    expect(applied).toBeGreaterThanOrEqual(burst);
    expect(applied).toBeLessThanOrEqual(burst + Math.ceil((ratePerS * elapsedMs) / 1000));
    expect(await inCrisis(client, FLOODER)).toBe(true);

    // Logged once per run of refusals (a run ends only at a press the refill let through), not once per dead letter.
    const runs = runtime.logs.filter((l) => l.msg === LIMITED_MSG && l.userId === FLOODER);
    expect(runs.length).toBeGreaterThanOrEqual(1);
    expect(runs.length).toBeLessThanOrEqual(applied - burst + 1);
    expect(runtime.logs.filter((l) => l.msg === 'dead letter' && l.reason === 'rate_limited')).toEqual([]);

    console.log(
      `crisis fairness: ${PRESSES} presses of one user: ${applied} applied, ${letters.length} dead letters (rate_limited); ` +
        `the other user's crisis applied; ${runs.length} log line(s) for the flood; ${elapsedMs.toFixed(0)} ms to settle`,
    );
  });

  it('a resolution refills the flooder’s bucket: a press right after it starts a new crisis, in the middle of a flood', async () => {
    const { client } = system();
    const flood = Array.from({ length: 100 }, () => event(FLOODER, 'crisis_button', { deviceId: 'phone' }));
    const resolved = event(FLOODER, 'crisis_resolved', { by: 'clinician' });
    const again = event(FLOODER, 'crisis_button', { deviceId: 'phone' });
    await Promise.all([...flood, resolved, again].map((e) => client.publish(e)));
    await lanesSettled(client);

    const limited = new Set((await client.deadLetters()).filter((l) => l.reason === 'rate_limited').map((l) => decode(UserEvent, l.raw!).id));
    // The bucket was empty (100 presses against at most 10 tokens); the resolution was never limited.
    expect(flood.filter((e) => limited.has(e.id)).length).toBeGreaterThanOrEqual(flood.length - burst);
    expect(limited.has(resolved.id)).toBe(false);
    expect(limited.has(again.id)).toBe(false);
    const audit = await client.audit();
    expect(audit.find((a) => a.eventId === resolved.id)).toMatchObject({ from: { crisis: 'active' }, to: { crisis: 'stable' } });
    expect(audit.find((a) => a.eventId === again.id)).toMatchObject({ from: { crisis: 'stable' }, to: { crisis: 'active' } });
    expect(await inCrisis(client, FLOODER)).toBe(true);
  });

  it('garbage on a crisis-button subject counts against its user too: decided by the subject, before decoding', async () => {
    const { client } = system();
    const flooder = 'flood-garbage';
    const other = samePartitionAs(flooder, client.topology.options.partitions);
    const subject = client.topology.subjects.event(flooder, 'crisis_button');
    const garbage = 500;
    const started = performance.now();
    await Promise.all(Array.from({ length: garbage }, (_, i) => client.publishRaw(subject, new Uint8Array([0xc1, i & 0xff]))));
    await client.publish(event(other, 'crisis_button', { deviceId: 'tablet' }));
    await waitFor(() => inCrisis(client, other), 'the other user’s crisis view');
    await lanesSettled(client);
    const elapsedMs = performance.now() - started;
    const letters = (await client.deadLetters()).filter((l) => l.subject === subject);
    const limited = letters.filter((l) => l.reason === 'rate_limited').length;
    expect(letters).toHaveLength(garbage);
    // Only what the bucket let through was decoded (and refused as not msgpack).
    expect(garbage - limited).toBeGreaterThanOrEqual(burst);
    expect(garbage - limited).toBeLessThanOrEqual(burst + Math.ceil((ratePerS * elapsedMs) / 1000));
  });
});

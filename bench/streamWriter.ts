/**
 * `node bench/streamWriter.ts [--count 50000] [--in-flight 256]`: what a JetStream publish costs this
 * process through nats.js's `js.publish` (a request per message) and through the
 * {@link StreamWriter} (one reply subscription, one timer), in the same run on the same server:
 * publishes per second and CPU µs per publish (`process.cpuUsage`), plain and with a `Nats-Msg-Id`.
 * Starts its own nats-server in a temp dir; the connection is the runtime's (`connectNats`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { jetstream, jetstreamManager, type PubAck } from '@nats-io/jetstream';
import { freePort, startNatsProcess } from '../scripts/natsProcess.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import { StreamWriter, type StreamPublishOptions } from '../transport/streamWriter.ts';

const { values: args } = parseArgs({
  options: { count: { type: 'string', default: '50000' }, 'in-flight': { type: 'string', default: '256' } },
});
const COUNT = Number(args.count);
const IN_FLIGHT = Number(args['in-flight']);
/** Publishes of each path before the measured runs, so that both are compiled (JIT) when measured. */
const WARMUP = 5_000;
const STREAM = 'BENCH';
/** Messages spread over this many subjects, as a lane's over its users. */
const SUBJECTS = 1_000;
const PAYLOAD = new Uint8Array(256).fill(0x61);

type Publish = (subject: string, data: Uint8Array, options?: StreamPublishOptions) => Promise<PubAck>;

/** Result of one measured run. */
interface Run {
  path: string;
  headers: string;
  publishesPerSec: number;
  cpuUsPerPublish: number;
}

/** Publishes `count` messages, `IN_FLIGHT` at a time; `msgIds` gives each a unique `Nats-Msg-Id`. */
async function publishAll(publish: Publish, count: number, msgIds: boolean, tag: string): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await publish(`bench.${i % SUBJECTS}`, PAYLOAD, msgIds ? { msgID: `${tag}:${i}` } : undefined);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
}

async function measure(path: string, publish: Publish, msgIds: boolean): Promise<Run> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  await publishAll(publish, COUNT, msgIds, `${path}:${msgIds}`);
  const seconds = (performance.now() - start) / 1000;
  const { user, system } = process.cpuUsage(cpu);
  return {
    path,
    headers: msgIds ? 'Nats-Msg-Id' : 'none',
    publishesPerSec: Math.round(COUNT / seconds),
    cpuUsPerPublish: Number(((user + system) / COUNT).toFixed(1)),
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'fullmind-bench-writer-'));
  const [port, httpPort] = await Promise.all([freePort(), freePort()]);
  const server = await startNatsProcess({ cwd: dir, port, httpPort });
  const nc = await connectNats({ servers: `nats://127.0.0.1:${port}`, name: 'bench/streamWriter', credentials: { role: 'runtime' } });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: STREAM, subjects: ['bench.>'] });
    const js = jetstream(nc);
    const writer = new StreamWriter(nc);
    const paths: Array<[string, Publish]> = [
      ['js.publish', (s, d, o) => js.publish(s, d, o)],
      ['StreamWriter', (s, d, o) => writer.publish(s, d, o)],
    ];
    for (const [name, publish] of paths) await publishAll(publish, WARMUP, true, `warmup:${name}`);
    const runs: Run[] = [];
    for (const msgIds of [false, true]) {
      for (const [name, publish] of paths) {
        await jsm.streams.purge(STREAM);
        runs.push(await measure(name, publish, msgIds));
      }
    }
    writer.close();
    console.table(runs);
    console.log(JSON.stringify({ count: COUNT, inFlight: IN_FLIGHT, runs }));
  } finally {
    await drainNats(nc);
    await server.terminate();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();

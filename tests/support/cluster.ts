/**
 * A three-server nats-server cluster per test file (scripts/natsProcess.ts's startNatsCluster):
 * free ports, a temp working dir (and so a store) per server, all stopped and removed after the
 * file's tests.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JetStreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll } from 'vitest';
import { startNatsCluster, streamLeader, type ClusterServerOptions, type NatsCluster } from '../../scripts/natsProcess.ts';
import { freePort } from './nats-server.ts';
import { waitFor } from './processes.ts';

/** A running test cluster. */
export interface TestCluster extends NatsCluster {
  /** Every server's client URL, comma-separated: what `NATS_URL` takes. */
  readonly url: string;
  /** Waits until the stream has a leader; returns its server name. */
  leader(jsm: JetStreamManager, stream: string): Promise<string>;
  /** What one server holds of a stream, from its own monitoring (`/jsz`); undefined when it has no copy. */
  localCopy(server: string, stream: string): Promise<{ messages: number; lastSeq: number } | undefined>;
}

/** The part of `/jsz?streams=true` read here. */
interface Jsz {
  account_details?: Array<{ stream_detail?: Array<{ name: string; state: { messages: number; last_seq: number } }> }>;
}

/** Starts a cluster of `size` servers on free ports with temp stores. */
export async function startTestCluster(size = 3): Promise<TestCluster> {
  const servers: ClusterServerOptions[] = [];
  for (let i = 1; i <= size; i++) {
    const [port, httpPort, routePort, cwd] = await Promise.all([freePort(), freePort(), freePort(), mkdtemp(join(tmpdir(), `fullmind-n${i}-`))]);
    servers.push({ name: `n${i}`, cwd, port, httpPort, routePort });
  }
  const removeStores = () => Promise.all(servers.map((s) => rm(s.cwd, { recursive: true, force: true })));
  let cluster: NatsCluster;
  try {
    cluster = await startNatsCluster({ servers });
  } catch (error) {
    await removeStores();
    throw error;
  }
  return {
    ...cluster,
    url: cluster.urls.join(','),
    leader: (jsm, stream) => waitFor(() => streamLeader(jsm, stream), `a leader of ${stream}`),
    async localCopy(server, stream) {
      const { httpPort } = servers.find((s) => s.name === server)!;
      const jsz = (await (await fetch(`http://127.0.0.1:${httpPort}/jsz?streams=true`)).json()) as Jsz;
      const detail = jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((d) => d.name === stream);
      return detail && { messages: detail.state.messages, lastSeq: detail.state.last_seq };
    },
    async terminate() {
      await cluster.terminate();
      await removeStores();
    },
  };
}

/** Starts a cluster in `beforeAll` and stops it in `afterAll`; returns an accessor. */
export function useNatsCluster(size = 3): () => TestCluster {
  let cluster: TestCluster | undefined;
  beforeAll(async () => {
    cluster = await startTestCluster(size);
  });
  afterAll(() => cluster?.terminate());
  return () => {
    if (!cluster) throw new Error('useNatsCluster: the cluster starts in beforeAll');
    return cluster;
  };
}

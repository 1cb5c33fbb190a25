/**
 * `npm run cluster`: the scale-out deployment on one machine (DESIGN §8). Three nats-servers from
 * nats.conf clustered on loopback (stores under the project's .data/cluster/), two runtime nodes
 * (`actors/main.ts` as node-1 and node-2) and the HTTP ingress alone (`scripts/start.ts` with
 * `FM_RUNTIME=off`), every stream and bucket with three replicas (`FM_REPLICAS=3`), every process
 * given all three servers in `NATS_URL`. Ports from {@link clusterConfigFromEnv}. Ctrl-C stops the
 * ingress, then the nodes, then the servers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../actors/logger.ts';
import { stopOnSignals } from '../actors/shutdown.ts';
import { startNatsCluster, type NatsCluster } from './natsProcess.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SERVERS = 3;
const READY_TIMEOUT_MS = 60_000;

/** Where the local cluster listens and how many nodes it runs. */
export interface ClusterConfig {
  /**
   * Client port of the first server; the second and third use the next two (`FM_CLUSTER_PORT`).
   * @default 4231
   */
  clientPort: number;
  /**
   * Route (cluster) port of the first server; the others use the next two (`FM_CLUSTER_ROUTE_PORT`).
   * @default 6231
   */
  routePort: number;
  /**
   * Monitoring port of the first server; the others use the next two (`FM_CLUSTER_HTTP_PORT`).
   * @default 8231
   */
  httpPort: number;
  /**
   * Runtime nodes, `node-1` … `node-<n>` (`FM_CLUSTER_NODES`).
   * @default 2
   */
  nodes: number;
}

/** Defaults of {@link ClusterConfig}: clear of `npm start`'s 4222/8222 and the ingress's 8080. */
export const DEFAULT_CLUSTER_CONFIG: Readonly<ClusterConfig> = { clientPort: 4231, routePort: 6231, httpPort: 8231, nodes: 2 };

/** The cluster's configuration from the environment over {@link DEFAULT_CLUSTER_CONFIG}. */
export function clusterConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ClusterConfig {
  const d = DEFAULT_CLUSTER_CONFIG;
  const int = (name: string, fallback: number) => {
    const value = env[name];
    if (value === undefined || value === '') return fallback;
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}: expected a positive integer, got "${value}"`);
    return n;
  };
  return {
    clientPort: int('FM_CLUSTER_PORT', d.clientPort),
    routePort: int('FM_CLUSTER_ROUTE_PORT', d.routePort),
    httpPort: int('FM_CLUSTER_HTTP_PORT', d.httpPort),
    nodes: int('FM_CLUSTER_NODES', d.nodes),
  };
}

/** A Node.js child process whose output is passed through; ready once it printed a given line. */
interface Service {
  name: string;
  child: ChildProcess;
  exited: Promise<void>;
}

/** Starts `script` with `env`, passes its output through, and waits until a line contains `ready`. */
async function startService(name: string, script: string, env: Record<string, string>, ready: string): Promise<Service> {
  // Its own process group: Ctrl-C reaches this launcher only, which stops everything in order.
  const child = spawn(process.execPath, [join(ROOT, script)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready after ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    let buffer = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk);
      buffer = (buffer + chunk.toString()).slice(-4_096);
      if (buffer.includes(ready)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${name} exited during startup (code ${child.exitCode}, signal ${child.signalCode})`));
    });
  });
  return { name, child, exited };
}

/** SIGTERM (a clean stop) and wait for the exit. */
async function stopService(service: Service): Promise<void> {
  if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGTERM');
  await service.exited;
}

/** The running local cluster. */
export interface LocalCluster {
  nats: NatsCluster;
  nodes: Service[];
  ingress: Service;
  stop(): Promise<void>;
}

/** Starts the servers, then the nodes one after the other, then the ingress; stops what started if one fails. */
export async function startLocalCluster(config: ClusterConfig, env: NodeJS.ProcessEnv = process.env): Promise<LocalCluster> {
  const servers = await Promise.all(
    Array.from({ length: SERVERS }, async (_, i) => {
      const cwd = join(ROOT, '.data/cluster', `n${i + 1}`);
      await mkdir(cwd, { recursive: true });
      return { name: `n${i + 1}`, cwd, port: config.clientPort + i, httpPort: config.httpPort + i, routePort: config.routePort + i };
    }),
  );
  const nats = await startNatsCluster({ servers, detached: true });
  const shared = { NATS_URL: nats.urls.join(','), FM_REPLICAS: String(SERVERS), LOG_LEVEL: env.LOG_LEVEL ?? 'info' };
  const nodes: Service[] = [];
  let ingress: Service | undefined;
  const stop = async () => {
    if (ingress) await stopService(ingress);
    await Promise.all(nodes.map(stopService));
    await nats.terminate();
  };
  try {
    for (let i = 1; i <= config.nodes; i++) {
      nodes.push(await startService(`node-${i}`, 'actors/main.ts', { ...shared, FM_NODE_ID: `node-${i}` }, 'runtime node ready'));
    }
    ingress = await startService('ingress', 'scripts/start.ts', { ...shared, FM_NODE_ID: 'ingress', FM_RUNTIME: 'off' }, 'ingress listening');
  } catch (error) {
    await stop();
    throw error;
  }
  return { nats, nodes, ingress, stop };
}

if (import.meta.main) {
  const log = createLogger({ component: 'cluster' });
  const config = clusterConfigFromEnv();
  const cluster = await startLocalCluster(config);
  log.info({ nats: cluster.nats.urls, nodes: cluster.nodes.map((n) => n.name) }, 'cluster running; Ctrl-C to stop');
  stopOnSignals(() => cluster.stop(), (err) => log.error({ err: err.message }, 'stop failed'));
}

/**
 * Runs nats-server from the project's nats.conf as a child process: finds the binary
 * (scripts/nats-server.sh, which may fetch it), starts it, and waits until clients can connect
 * and JetStream is healthy. Used by `npm start`, the demo, the bench and the test harness; and a
 * cluster of them on loopback (`npm run cluster`, the cluster tests).
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer, connect as tcpConnect } from 'node:net';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ensureSecrets, serverEnv } from '../auth/secrets.ts';
import { secretsDirFromEnv } from '../transport/credentials.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The project's server configuration. */
export const NATS_CONF = join(ROOT, 'nats.conf');
const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
/** Log kept for error messages; the startup banner fits comfortably. */
const LOG_LIMIT = 16_384;

let binary: Promise<string> | undefined;

/** Path of nats-server >= 2.12; the script may download it, so it runs once per process. */
export function natsServerBinary(): Promise<string> {
  binary ??= promisify(execFile)('bash', [join(ROOT, 'scripts/nats-server.sh')], { cwd: ROOT }).then(({ stdout }) =>
    stdout.trim(),
  );
  return binary;
}

/** Options of {@link startNatsProcess}. */
export interface NatsProcessOptions {
  /** Working directory: nats.conf's relative store_dir resolves in it. */
  cwd: string;
  /** Client and monitoring ports; nats.conf's when omitted. */
  port?: number;
  httpPort?: number;
  /** Extra flags, e.g. `['-DV']`. */
  args?: readonly string[];
  /**
   * Where the secrets directory (`FM_SECRETS`) and `FM_ALLOW_PLAIN` are read; the directory gets a
   * development set of secrets when it has none.
   * @default process.env
   */
  env?: NodeJS.ProcessEnv;
  /**
   * Run in a process group of its own, so that a terminal's Ctrl-C reaches only the parent, which
   * stops the server after the processes that use it.
   * @default false
   */
  detached?: boolean;
  /**
   * The address the server listens on for clients and serves monitoring on, instead of nats.conf's
   * loopback: the server then runs from a configuration in `cwd` that includes nats.conf and sets
   * only `listen` and `http` (no flag sets the monitoring address). Clients verify the server's
   * certificate, so it must name this address.
   * @default '127.0.0.1' (nats.conf's)
   */
  host?: string;
  /**
   * A network namespace (`ip netns add`, root only) to run the server in, through `ip netns exec`,
   * which execs it: the child process is the server itself, so signals reach it.
   * @default none: the parent's namespace
   */
  netns?: string;
  /** Configuration lines after nats.conf's (a `cluster {}` block, say). @default none */
  config?: readonly string[];
}

/** A running nats-server child. */
export interface NatsProcess {
  readonly child: ChildProcess;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  /** SIGTERM, then SIGKILL after 10 s (a stopped process ignores SIGTERM); resolves on exit. */
  terminate(): Promise<void>;
}

const DEFAULT_PORT = 4222;
const DEFAULT_HTTP_PORT = 8222;
/** nats.conf's listen and monitoring address. */
const LOOPBACK = '127.0.0.1';

/**
 * A configuration in `cwd` that is nats.conf with `lines` after it (they override what it sets);
 * returns its path. An include is resolved from the including file's folder.
 */
async function serverConf(cwd: string, lines: readonly string[]): Promise<string> {
  const file = join(cwd, 'nats-server.conf');
  await writeFile(file, [`include "${relative(cwd, NATS_CONF)}"`, ...lines, ''].join('\n'));
  return file;
}

/** Starts nats-server from nats.conf with its secrets and waits until it is ready; throws with its log if it is not. */
export async function startNatsProcess(options: NatsProcessOptions): Promise<NatsProcess> {
  const port = options.port ?? DEFAULT_PORT;
  const httpPort = options.httpPort ?? DEFAULT_HTTP_PORT;
  const host = options.host ?? LOOPBACK;
  const lines = [...(options.host === undefined ? [] : [`listen: "${host}:${port}"`, `http: "${host}:${httpPort}"`]), ...(options.config ?? [])];
  const conf = lines.length === 0 ? NATS_CONF : await serverConf(options.cwd, lines);
  const args = ['-c', conf, '-p', String(port), '-m', String(httpPort), ...(options.args ?? [])];
  const env = options.env ?? process.env;
  await ensureSecrets(secretsDirFromEnv(env));
  const binary = await natsServerBinary();
  const [command, commandArgs]: [string, string[]] = options.netns === undefined ? [binary, args] : ['ip', ['netns', 'exec', options.netns, binary, ...args]];
  const child = spawn(command, commandArgs, {
    cwd: options.cwd,
    env: { ...process.env, ...serverEnv(env) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached,
  });
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-LOG_LIMIT);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const running = () => child.exitCode === null && child.signalCode === null;
  const terminate = async () => {
    if (!running()) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };
  await new Promise((resolve, reject) => child.once('spawn', resolve).once('error', reject));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!((await acceptsTcp(port, host)) && (await healthy(httpPort, host)))) {
    if (!running()) throw new Error(`nats-server exited during startup:\n${log}`);
    if (Date.now() > deadline) {
      await terminate();
      throw new Error(`nats-server not ready after ${READY_TIMEOUT_MS} ms:\n${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, exited, terminate };
}

/** A loopback port that was free a moment ago; the OS picks it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port assigned'))));
    });
  });
}

/** True once the port accepts connections (on loopback unless `host` says otherwise). */
export function acceptsTcp(port: number, host = LOOPBACK): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The monitoring endpoint reports the server (and JetStream) healthy. */
async function healthy(httpPort: number, host: string): Promise<boolean> {
  try {
    return (await fetch(`http://${host}:${httpPort}/healthz`)).ok;
  } catch {
    return false;
  }
}

/**
 * How often a server pings its routes, and how many unanswered pings end one: a peer that died or
 * was cut off is noticed in about 3 s instead of nats-server's 2 minutes × 2. Until then the
 * others still send it requests for its queue subscribers (a replica's direct gets, say), which
 * time out: devices were refused at sign-in for want of their standing (nemesis run).
 */
const ROUTE_PINGS = ['  ping_interval: "1s"', '  ping_max: 3'];

/** One server of a {@link startNatsCluster} cluster. */
export interface ClusterServerOptions {
  /** Its `server_name`, unique in the cluster: JetStream names Raft peers and leaders by it. */
  name: string;
  /** Working directory, one per server: nats.conf's relative store_dir puts its store in it. */
  cwd: string;
  /** Client, monitoring and route (cluster) ports. */
  port: number;
  httpPort: number;
  routePort: number;
  /** Client and monitoring address ({@link NatsProcessOptions.host}). @default '127.0.0.1' */
  host?: string;
  /** The address its routes listen on and the others reach it at. @default '127.0.0.1' */
  routeHost?: string;
  /** Network namespace to run it in ({@link NatsProcessOptions.netns}). @default none */
  netns?: string;
  /** Extra flags of this server, e.g. `['-l', file]` to keep its log. @default none */
  args?: readonly string[];
}

/** Options of {@link startNatsCluster}. */
export interface NatsClusterOptions {
  /**
   * The cluster's name.
   * @default 'fullmind-sync'
   */
  name?: string;
  /** The servers, each routed to all the others. */
  servers: readonly ClusterServerOptions[];
  /** See {@link NatsProcessOptions.detached}. @default false */
  detached?: boolean;
}

/** A running cluster of nats-servers. */
export interface NatsCluster {
  /** Client URLs, one per server, in the order given. */
  readonly urls: readonly string[];
  /** The servers, in the order given. */
  readonly servers: readonly ClusterServerOptions[];
  /** kill -9 of one server; resolves once it has exited. Its store stays. */
  kill(name: string): Promise<void>;
  /** The process id of a running server (its CPU time is read from /proc); undefined once killed. */
  pid(name: string): number | undefined;
  /** Starts a killed server again from its store; resolves once it is healthy (caught up). */
  restart(name: string): Promise<void>;
  /** Stops every server (SIGTERM, then SIGKILL after 10 s). */
  terminate(): Promise<void>;
}

/**
 * Starts a cluster on loopback: each server from nats.conf, with its `server_name` given as a flag
 * and the cluster's block (name, routes, route pings: {@link ROUTE_PINGS}) in a configuration that
 * includes nats.conf.
 * The servers start together: a clustered server reports healthy only once JetStream has a quorum.
 */
export async function startNatsCluster(options: NatsClusterOptions): Promise<NatsCluster> {
  const clusterName = options.name ?? 'fullmind-sync';
  const route = (s: ClusterServerOptions) => `nats://${s.routeHost ?? LOOPBACK}:${s.routePort}`;
  const routes = options.servers.map((s) => `"${route(s)}"`).join(', ');
  const byName = new Map(options.servers.map((s) => [s.name, s]));
  const launch = (s: ClusterServerOptions) =>
    startNatsProcess({
      cwd: s.cwd,
      port: s.port,
      httpPort: s.httpPort,
      host: s.host,
      netns: s.netns,
      detached: options.detached,
      args: ['--server_name', s.name, ...(s.args ?? [])],
      config: [`cluster {`, `  name: "${clusterName}"`, `  listen: "${route(s).slice('nats://'.length)}"`, `  routes: [${routes}]`, ...ROUTE_PINGS, `}`],
    });
  const started = await Promise.allSettled(options.servers.map(launch));
  const running = new Map<string, NatsProcess>();
  started.forEach((r, i) => r.status === 'fulfilled' && running.set(options.servers[i]!.name, r.value));
  const failed = started.find((r) => r.status === 'rejected');
  const terminate = async () => {
    await Promise.all([...running.values()].map((p) => p.terminate()));
  };
  if (failed) {
    await terminate();
    throw failed.reason;
  }
  const member = (name: string) => {
    const server = byName.get(name);
    if (!server) throw new Error(`no server ${name} in the cluster`);
    return server;
  };
  return {
    urls: options.servers.map((s) => `nats://${s.host ?? LOOPBACK}:${s.port}`),
    servers: options.servers,
    async kill(name) {
      member(name);
      const p = running.get(name);
      if (!p) return;
      p.child.kill('SIGKILL');
      await p.exited;
    },
    pid(name) {
      const p = running.get(member(name).name);
      return p && p.child.exitCode === null && p.child.signalCode === null ? p.child.pid : undefined;
    },
    async restart(name) {
      running.set(name, await launch(member(name)));
    },
    terminate,
  };
}

/** The `server_name` of the server leading a stream's Raft group; undefined while it has none. */
export async function streamLeader(jsm: JetStreamManager, stream: string): Promise<string | undefined> {
  return (await jsm.streams.info(stream)).cluster?.leader || undefined;
}

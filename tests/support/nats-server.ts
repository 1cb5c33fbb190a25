/**
 * Starts a private nats-server from the project's nats.conf for integration tests.
 *
 * Each server gets free ports and a temp working dir. nats.conf's store_dir is relative, so it
 * resolves inside that dir: `-sd` cannot override it (nats-server 2.10 to 2.15 reject a store_dir
 * set both by flag and by config as a duplicate), and a rewritten copy of the config would
 * break any relative include in it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConnectionOptions } from '@nats-io/transport-node';
import { afterAll, beforeAll } from 'vitest';
import { credentialOptions } from '../../transport/credentials.ts';
import { freePort, startNatsProcess, type NatsProcess } from '../../scripts/natsProcess.ts';

/** Options for {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Client port; a free one when omitted. */
  port?: number;
  /** Extra nats-server flags, e.g. `["-DV"]` to debug a test. */
  args?: readonly string[];
}

/** A running nats-server owned by a test. */
export interface NatsServer {
  /** Client URL, e.g. `nats://127.0.0.1:40123`. */
  readonly url: string;
  /** Client port; kept across {@link NatsServer.restart}. */
  readonly port: number;
  /** Temp working dir of the server; JetStream stores its data under `.data/nats` in it. */
  readonly storeDir: string;
  /** Sends SIGTERM, waits for exit (SIGKILL after 10 s) and removes {@link storeDir}. Idempotent. */
  stop(): Promise<void>;
  /** Sends a signal without waiting, e.g. SIGKILL for a crash or SIGSTOP for a hang. */
  kill(signal: NodeJS.Signals): void;
  /** Stops the server, keeping its store, and starts it again on the same ports: a NATS outage. */
  restart(): Promise<void>;
}

export { freePort };

/** What a test's raw nats.js `connect()` needs to sign in: the runtime's key and the tests' CA. */
export function asRuntime(): Partial<ConnectionOptions> {
  return credentialOptions({ role: 'runtime' });
}

/** Starts nats-server from nats.conf on free ports with a temp store and waits until it is ready. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const [port, httpPort, storeDir] = await Promise.all([
    options.port ?? freePort(),
    freePort(),
    mkdtemp(join(tmpdir(), 'fullmind-nats-')),
  ]);
  const launch = () => startNatsProcess({ cwd: storeDir, port, httpPort, args: options.args ?? [] });
  let server: NatsProcess;
  try {
    server = await launch();
  } catch (error) {
    await rm(storeDir, { recursive: true, force: true });
    throw error;
  }
  let stopped = false;
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.terminate();
      await rm(storeDir, { recursive: true, force: true });
    },
    kill(signal) {
      server.child.kill(signal);
    },
    async restart() {
      await server.terminate();
      server = await launch();
    },
  };
}

/**
 * Starts a server in `beforeAll` and stops it in `afterAll` of the calling suite.
 * Returns an accessor, since the server exists only once `beforeAll` has run.
 */
export function useNatsServer(options?: NatsServerOptions): () => NatsServer {
  let server: NatsServer | undefined;
  beforeAll(async () => {
    server = await startNatsServer(options);
  });
  afterAll(() => server?.stop());
  return () => {
    if (!server) throw new Error('useNatsServer: the server starts in beforeAll');
    return server;
  };
}

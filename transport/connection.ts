/**
 * NATS connections: reconnecting forever (JetStream keeps what was published; a node that cannot
 * reach NATS can only wait), and drained on shutdown so in-flight acks and publishes complete.
 */
import { connect, type NatsConnection, type Server } from '@nats-io/transport-node';
import { credentialOptions, type Credentials } from './credentials.ts';

/** Default NATS URL when none is configured. */
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** Options of {@link connectNats}. */
export interface ConnectOptions {
  /**
   * Server URL(s): a list, or a comma-separated string such as `NATS_URL` holds for a cluster.
   * @default natsUrlFromEnv(), `NATS_URL` or {@link DEFAULT_NATS_URL}
   */
  servers?: string | string[];
  /** Connection name, shown by the server's monitoring (e.g. `node-1/crisis`). */
  name: string;
  /** Who signs in: a role's key from the secrets directory, or a device's token (over TLS either way). */
  credentials: Credentials;
  /**
   * Give up after this many failed reconnect attempts; -1 retries forever.
   * @default -1
   */
  maxReconnectAttempts?: number;
  /**
   * Wait between two reconnect attempts to the same server.
   * @default 250
   */
  reconnectTimeWaitMs?: number;
  /**
   * How often the client pings the server, so a dead connection is noticed.
   * @default 10000
   */
  pingIntervalMs?: number;
  /**
   * How long one attempt to connect to a server may take before the next server is tried: what a
   * server whose address no longer answers (cut off, stopped) holds a (re)connect for. nats.js's
   * own; shorter ones made the test's thousand devices signing in at once on two cores time out
   * and try again.
   * @default 20000
   */
  connectTimeoutMs?: number;
  /**
   * The server (`host:port`, as `nc.getServer()` gives it) not to connect or reconnect to while
   * another one is known, asked before each attempt: a device's standby connection keeps off the
   * server its main connection is on, and the main one off the standby's.
   */
  avoidServer?: () => string | undefined;
}

/** Defaults of {@link ConnectOptions}. */
export const DEFAULT_CONNECT_OPTIONS = { maxReconnectAttempts: -1, reconnectTimeWaitMs: 250, pingIntervalMs: 10_000, connectTimeoutMs: 20_000 } as const;

/** The NATS URL(s) from `NATS_URL`, else {@link DEFAULT_NATS_URL}: the one place `NATS_URL` is read. */
export function natsUrlFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return env.NATS_URL || DEFAULT_NATS_URL;
}

/** Opens a connection that signs in with its credentials, reconnects forever and waits for the server at start. */
export function connectNats(options: ConnectOptions): Promise<NatsConnection> {
  const o = { ...DEFAULT_CONNECT_OPTIONS, ...options };
  const servers = o.servers ?? natsUrlFromEnv();
  return connect({
    ...credentialOptions(o.credentials),
    // nats.js reads a string as one server, so a comma-separated list would reach only one of them.
    servers: typeof servers === 'string' ? servers.split(',') : servers,
    name: o.name,
    maxReconnectAttempts: o.maxReconnectAttempts,
    reconnectTimeWait: o.reconnectTimeWaitMs,
    waitOnFirstConnect: true,
    pingInterval: o.pingIntervalMs,
    timeout: o.connectTimeoutMs,
    reconnectToServer: o.avoidServer && ((pool) => avoiding(pool, o.avoidServer!())),
    // Each request would otherwise build two Error objects with stack traces up front, for a
    // timeout that almost never happens: a tenth of the runtime's CPU at full load (bench profile).
    noAsyncTraces: true,
  });
}

/** The first server of nats.js's pool (its own pick first) that is not `away`; `null` (its own pick) when none is. */
function avoiding(pool: ReadonlyArray<Server>, away: string | undefined): Server | null {
  return pool.find((s) => s.listen !== away) ?? null;
}

/** Drains a connection (flushes publishes, finishes subscriptions) unless it is already closed. */
export async function drainNats(nc: NatsConnection): Promise<void> {
  if (nc.isClosed()) return;
  try {
    await nc.drain();
  } catch {
    await nc.close();
  }
}

/** What runs on each reconnect of a connection: one status listener per connection, however many handlers. */
const reconnectHandlers = new WeakMap<NatsConnection, Set<() => void>>();

/**
 * Calls `handler` after each reconnect of `nc` (nats.js has made its subscriptions again by then)
 * until the returned function is called.
 */
export function onReconnect(nc: NatsConnection, handler: () => void): () => void {
  let handlers = reconnectHandlers.get(nc);
  if (!handlers) {
    const all = new Set<() => void>();
    reconnectHandlers.set(nc, all);
    // The listener ends when the connection closes.
    void (async () => {
      for await (const status of nc.status()) if (status.type === 'reconnect') for (const h of all) h();
    })();
    handlers = all;
  }
  handlers.add(handler);
  return () => handlers.delete(handler);
}

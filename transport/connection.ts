/**
 * NATS connections: reconnecting forever (JetStream keeps what was published; a node that cannot
 * reach NATS can only wait), and drained on shutdown so in-flight acks and publishes complete.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';

/** Default NATS URL when none is configured. */
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** Options of {@link connectNats}. */
export interface ConnectOptions {
  /** Server URL(s); `NATS_URL` or {@link DEFAULT_NATS_URL} when omitted. */
  servers?: string | string[];
  /** Connection name, shown by the server's monitoring (e.g. `runtime-node-1/crisis`). */
  name: string;
  /** Give up after this many failed reconnect attempts; -1 (default) retries forever. */
  maxReconnectAttempts?: number;
}

/** Opens a connection that reconnects forever and waits for the server at start. */
export function connectNats(options: ConnectOptions): Promise<NatsConnection> {
  return connect({
    servers: options.servers ?? process.env.NATS_URL ?? DEFAULT_NATS_URL,
    name: options.name,
    maxReconnectAttempts: options.maxReconnectAttempts ?? -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    pingInterval: 10_000,
    // Each request would otherwise build two Error objects with stack traces up front, for a
    // timeout that almost never happens: a tenth of the runtime's CPU at full load (bench profile).
    noAsyncTraces: true,
  });
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

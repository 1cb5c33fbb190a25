/**
 * `npm start`: the main job on an embedded default. Starts nats-server from nats.conf (store under
 * the project's .data/, unless NATS_URL points at a server already running) and one runtime node;
 * Ctrl-C stops the node cleanly, then the server.
 */
import { fileURLToPath } from 'node:url';
import { configFromEnv } from '../actors/config.ts';
import { RuntimeNode } from '../actors/node.ts';
import { stopOnSignals } from '../actors/shutdown.ts';
import { startNatsProcess, type NatsProcess } from './natsProcess.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A started system: the node and, when embedded, the server it runs on. */
export interface System {
  node: RuntimeNode;
  nats: NatsProcess | undefined;
  stop(): Promise<void>;
}

/** Starts nats-server (unless `NATS_URL` is set) and one runtime node. */
export async function startSystem(): Promise<System> {
  const nats = process.env.NATS_URL ? undefined : await startNatsProcess({ cwd: ROOT });
  const node = await RuntimeNode.start(configFromEnv());
  return {
    node,
    nats,
    async stop() {
      await node.stop();
      await nats?.terminate();
    },
  };
}

if (import.meta.main) {
  const system = await startSystem();
  system.node.log.info({ embeddedNats: system.nats !== undefined }, 'fullmind-sync running; Ctrl-C to stop');
  stopOnSignals(() => system.stop());
}

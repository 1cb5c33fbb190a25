/**
 * A whole system per test file: a private nats-server, a runtime node process, a test client, and
 * device processes on demand; all stopped after the file's tests.
 */
import { afterAll, beforeAll } from 'vitest';
import { TestClient } from './client.ts';
import { startNatsServer, type NatsServer } from './nats-server.ts';
import { DeviceProcess, RuntimeProcess } from './processes.ts';

/** The running system of a test file. */
export interface System {
  nats: NatsServer;
  runtime: RuntimeProcess;
  client: TestClient;
  /** Starts a device process for `user:device` pairs (stopped after the file). */
  devices(...pairs: string[]): Promise<DeviceProcess>;
  /** Stops (or crashes) the runtime node and starts a new one with the same environment. */
  restartRuntime(options?: { crash?: boolean; env?: Record<string, string>; before?: () => Promise<void> }): Promise<RuntimeProcess>;
}

/**
 * Starts a system in `beforeAll` with runtime environment `env` (`script`: run `npm start`'s
 * `scripts/start.ts`, node and ingress, instead of the bare node); returns an accessor.
 */
export function useSystem(env: Record<string, string> = {}, options: { script?: 'actors/main.ts' | 'scripts/start.ts' } = {}): () => System {
  let system: System | undefined;
  const deviceProcesses: DeviceProcess[] = [];
  beforeAll(async () => {
    const nats = await startNatsServer();
    const runtime = await RuntimeProcess.start(nats.url, env, options.script);
    const client = await TestClient.connect(nats.url);
    system = {
      nats,
      runtime,
      client,
      async devices(...pairs) {
        const p = await DeviceProcess.start(nats.url, pairs);
        deviceProcesses.push(p);
        return p;
      },
      async restartRuntime(restart = {}) {
        await (restart.crash ? system!.runtime.crash() : system!.runtime.stop());
        await restart.before?.();
        system!.runtime = await RuntimeProcess.start(nats.url, { ...env, ...restart.env }, options.script);
        return system!.runtime;
      },
    };
  });
  afterAll(async () => {
    await Promise.all(deviceProcesses.map((p) => p.stop()));
    await system?.runtime.stop();
    await system?.client.close();
    await system?.nats.stop();
  });
  return () => {
    if (!system) throw new Error('useSystem: the system starts in beforeAll');
    return system;
  };
}

/**
 * Real processes for integration tests: a runtime node (`actors/main.ts`) and device processes
 * (`clients/devicesMain.ts`), each its own Node.js process talking to the test's nats-server.
 * Device processes print one JSON line per applied view; this harness keeps them per device.
 * Everything a process writes is also appended to its own file under {@link LOG_DIR}.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kvm } from '@nats-io/kv';
import { expect } from 'vitest';
import { deploymentFromEnv } from '../../actors/config.ts';
import { issueDeviceToken } from '../../auth/deviceToken.ts';
import { connectNats, drainNats } from '../../transport/connection.ts';
import { secretsDirFromEnv } from '../../transport/credentials.ts';
import type { DeviceView } from '../../transport/schemas.ts';
import { createTopology } from '../../transport/topology.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/**
 * Where every child's output (stdout and stderr) is kept, one file per process,
 * `<test file>.<script>.<pid>.log`: what `scripts/piiSweep.ts` reads after the suite.
 */
export const LOG_DIR = join(ROOT, 'test-results', 'logs');
const START_TIMEOUT_MS = 20_000;

/** Polls `check` until it returns a truthy value or the timeout passes. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Opens (appending) the log file of a child running `script`. */
function openLog(script: string, pid: number | undefined): number {
  mkdirSync(LOG_DIR, { recursive: true });
  const testFile = basename(expect.getState().testPath ?? 'no-test');
  return openSync(join(LOG_DIR, `${testFile}.${basename(script, '.ts')}.${pid ?? 'unstarted'}.log`), 'a');
}

/** A child process whose stdout is read line by line. */
class Child {
  readonly lines: string[] = [];
  readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  private stderr = '';

  constructor(script: string, args: string[], env: Record<string, string>, onLine: (line: string) => void) {
    this.child = spawn(process.execPath, [script, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = openLog(script, this.child.pid);
    // Written at once, synchronously: a test worker may exit right after its last child.
    const keep = (chunk: Buffer) => writeSync(log, chunk);
    this.child.once('close', () => closeSync(log));
    let buffer = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      keep(chunk);
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        this.lines.push(line);
        onLine(line);
      }
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      keep(chunk);
      this.stderr = (this.stderr + chunk.toString()).slice(-8_192);
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async waitForLine(predicate: (line: string) => boolean, what: string, timeoutMs = START_TIMEOUT_MS): Promise<void> {
    await waitFor(
      () => {
        if (!this.running) throw new Error(`process exited while waiting for ${what}:\n${this.stderr}\n${this.lines.slice(-20).join('\n')}`);
        return this.lines.some(predicate);
      },
      what,
      timeoutMs,
    );
  }

  /** SIGTERM and wait for the exit. */
  async stop(): Promise<void> {
    if (this.running) this.child.kill('SIGTERM');
    await this.exited;
  }

  /** SIGKILL (a crash) and wait for the exit. */
  async crash(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/**
 * How long a device process may take until every device signed in and caught up: a thousand
 * devices, each a TLS connection admitted by the auth callout, take some 30 s on two busy cores.
 */
const DEVICES_READY_MS = 60_000;

/** A runtime node process. */
export class RuntimeProcess extends Child {
  /**
   * Starts a runtime node against `natsUrl` and waits until it is consuming: `actors/main.ts`, or
   * `scripts/start.ts` (`npm start`: the node and the HTTP ingress, then ready once it listens;
   * the ingress alone with `FM_RUNTIME=off`).
   */
  static async start(
    natsUrl: string,
    env: Record<string, string> = {},
    script: 'actors/main.ts' | 'scripts/start.ts' = 'actors/main.ts',
  ): Promise<RuntimeProcess> {
    const p = new RuntimeProcess(script, [], { NATS_URL: natsUrl, LOG_LEVEL: 'info', ...env }, () => {});
    try {
      if (env.FM_RUNTIME !== 'off') await p.waitForLine((l) => l.includes('runtime node ready'), 'runtime node ready');
      if (env.FM_RUNTIME !== 'off' && env.FM_CALLOUT !== 'off') await p.waitForLine((l) => l.includes('auth callout ready'), 'auth callout ready');
      if (script === 'scripts/start.ts') await p.waitForLine((l) => l.includes('ingress listening'), 'ingress listening');
    } catch (err) {
      // As a device process that never got ready: stopped here, or nothing would stop it.
      await p.crash();
      throw err;
    }
    return p;
  }

  /** The ingress's HTTP port (from its log), when started by `scripts/start.ts`. */
  get httpPort(): number {
    const line = this.logs.find((l) => l.msg === 'ingress listening');
    if (!line) throw new Error('no ingress in this process');
    return line.port as number;
  }

  /** Log records (pino JSON lines) the node wrote. */
  get logs(): Array<Record<string, unknown>> {
    return this.lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }
}

/** What a device process reports for each view it applied. */
export interface AppliedView {
  userId: string;
  deviceId: string;
  version: number;
  tier: DeviceView['tier'];
  status: DeviceView['status'];
  crisis: boolean;
  crisisLevel: string | null;
  features: string[];
  priority: string;
  trialEndsAt: DeviceView['trialEndsAt'];
  gracePeriod: DeviceView['gracePeriod'];
  crisisSince: DeviceView['crisis']['since'];
  crisisSignalsUntil: DeviceView['crisis']['signalsUntil'];
  /** The crisis of a press heard before a stored view accounted for it, over the view of `version`. */
  provisional: boolean;
  presentation: DeviceView['crisis']['presentation'];
  disabledFeatures: DeviceView['features']['disabled'];
  sync: DeviceView['sync'];
  safetyPlan: boolean;
  contacts: number;
  /** sha256 (16 hex) of the view's safety content. */
  safetyDigest: string;
  issuedAt: number;
  appliedAt: number;
}

/** A token for each `user:device` pair, recorded as the device's current one; `env` names the deployment. */
async function issueTokens(natsUrl: string, devices: string[], env: Record<string, string>): Promise<Record<string, string>> {
  const topology = createTopology(deploymentFromEnv({ ...process.env, ...env }).topology);
  const nc = await connectNats({ servers: natsUrl, name: 'test-device-tokens', credentials: { role: 'runtime' } });
  try {
    const bucket = await new Kvm(nc).open(topology.buckets.deviceTokens);
    const issued = await Promise.all(
      devices.map(async (pair) => {
        const [userId, deviceId] = pair.split(':') as [string, string];
        return [pair, await issueDeviceToken(bucket, { userId, deviceId })] as const;
      }),
    );
    return Object.fromEntries(issued);
  } finally {
    await drainNats(nc);
  }
}

/** Token files written so far by this worker (their names must not collide). */
let tokenFiles = 0;

/** A device process hosting device actors. */
export class DeviceProcess extends Child {
  /** Every view applied, in order, per `user:device`. */
  readonly applied = new Map<string, AppliedView[]>();

  /**
   * Issues a token for each `user:device` pair (as its registration would), starts device actors
   * signed in with them, and waits until each was admitted and caught up, or refused once (not
   * registered yet: it signs in again until it is).
   */
  static async start(natsUrl: string, devices: string[], env: Record<string, string> = {}): Promise<DeviceProcess> {
    // In a file beside the run's other secrets: a thousand tokens are more than one variable may hold.
    const tokensFile = join(secretsDirFromEnv(), `device-tokens-${process.pid}-${++tokenFiles}.json`);
    writeFileSync(tokensFile, JSON.stringify(await issueTokens(natsUrl, devices, env)), { mode: 0o600 });
    const p: DeviceProcess = new DeviceProcess('clients/devicesMain.ts', devices, { NATS_URL: natsUrl, FM_DEVICE_TOKENS_FILE: tokensFile, ...env }, (line) => {
      const record = JSON.parse(line) as { applied?: boolean } & AppliedView;
      if (!record.applied) return;
      const key = `${record.userId}:${record.deviceId}`;
      const list = p.applied.get(key) ?? [];
      list.push(record);
      p.applied.set(key, list);
    });
    await p.waitForLine((l) => l.includes('"ready":true'), 'devices ready', DEVICES_READY_MS).catch(async (err: unknown) => {
      // Not handed to the caller, so no one else would stop it: a leaked device process kept a
      // thousand devices signing in on the machine long after its test had failed.
      await p.crash();
      throw err;
    });
    return p;
  }

  /** The last view a device applied. */
  latest(device: string): AppliedView | undefined {
    return this.applied.get(device)?.at(-1);
  }

  /** Waits until a device's last applied view satisfies `predicate`. */
  async waitForView(device: string, predicate: (v: AppliedView) => boolean, what: string, timeoutMs?: number): Promise<AppliedView> {
    return waitFor(
      () => {
        const v = this.latest(device);
        return v && predicate(v) ? v : undefined;
      },
      `${device}: ${what}`,
      timeoutMs,
    );
  }
}

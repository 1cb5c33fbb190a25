/**
 * Device processes of the run (`clients/devicesMain.ts`): each hosts the devices of a few users,
 * signed in with tokens issued as registration would (through the auth callout), and prints a JSON
 * line per view applied and per crisis press. This module keeps those lines per device (the
 * devices' logs the checker reads), presses a device's crisis button through the process's stdin,
 * and waits on what the devices show.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KV } from '@nats-io/kv';
import { issueDeviceToken } from '../auth/deviceToken.ts';
import type { AppliedLine, DeviceLog, PressLine } from './checker.ts';
import { ManagedProcess } from './processes.ts';
import { whileTransient } from './retry.ts';

/** What a device process prints (the fields read here). */
interface Printed {
  applied?: boolean;
  provisional?: boolean;
  pressed?: boolean;
  removed?: boolean;
  ready?: boolean;
  userId?: string;
  deviceId?: string;
  version?: number;
  crisis?: boolean;
  appliedAt?: number;
  at?: number;
  storedAt?: number | null;
  seq?: number;
  attempts?: number;
  error?: string;
}

/** A waiter on what a user's devices show. */
interface Waiter {
  userId: string;
  test: (devices: readonly DeviceLog[]) => boolean;
  resolve: (met: boolean) => void;
}

/** One device process and the logs of its devices. */
export class DeviceGroup {
  readonly name: string;
  readonly process: ManagedProcess;
  /** Per `user:device`, what it printed. */
  readonly logs = new Map<string, DeviceLog>();
  private readonly pressing = new Map<string, Array<(p: PressLine) => void>>();
  private readonly waiters = new Set<Waiter>();

  private constructor(name: string, process: ManagedProcess, pairs: readonly string[]) {
    this.name = name;
    this.process = process;
    for (const pair of pairs) {
      const [userId, deviceId] = pair.split(':') as [string, string];
      this.logs.set(pair, { userId, deviceId, applied: [], presses: [], removed: false });
    }
    process.onLine((line) => this.read(line));
  }

  /**
   * Issues a token per `user:device` (recorded as the device's current one in `tokens`), writes them
   * to a file in `secretsDir`, starts the process and waits until it reports every device signed in
   * once (admitted, or refused while not registered yet).
   */
  static async start(options: {
    name: string;
    pairs: readonly string[];
    tokens: KV;
    secretsDir: string;
    env: Record<string, string>;
    logFile: string;
    readyTimeoutMs: number;
    /** Until when a token whose store failed transiently is issued again (as registration would). */
    giveUpAt: number;
  }): Promise<DeviceGroup> {
    const issued = await Promise.all(
      options.pairs.map(async (pair) => {
        const [userId, deviceId] = pair.split(':') as [string, string];
        return [pair, await whileTransient(() => issueDeviceToken(options.tokens, { userId, deviceId }), options.giveUpAt)] as const;
      }),
    );
    const tokensFile = join(options.secretsDir, `device-tokens-${options.name}.json`);
    await writeFile(tokensFile, JSON.stringify(Object.fromEntries(issued)), { mode: 0o600 });
    const p = new ManagedProcess(options.name, 'clients/devicesMain.ts', options.pairs, { ...options.env, FM_DEVICE_TOKENS_FILE: tokensFile }, options.logFile);
    const group = new DeviceGroup(options.name, p, options.pairs);
    try {
      await p.waitForLine((l) => l.includes('"ready":true'), 'devices ready', options.readyTimeoutMs);
    } catch (err) {
      await p.stop();
      throw err;
    }
    return group;
  }

  /** The devices of one user in this process. */
  devicesOf(userId: string): DeviceLog[] {
    return [...this.logs.values()].filter((d) => d.userId === userId);
  }

  /** Presses a device's crisis button; resolves with what the process reported (stored, or the error after its retries). */
  press(device: string): Promise<PressLine> {
    return new Promise((resolve) => {
      const queue = this.pressing.get(device) ?? [];
      queue.push(resolve);
      this.pressing.set(device, queue);
      this.process.send(`press ${device}`);
    });
  }

  /**
   * Resolves true once `test` holds for the user's devices, false after `timeoutMs` or when the
   * process exits.
   */
  until(userId: string, test: (devices: readonly DeviceLog[]) => boolean, timeoutMs: number): Promise<boolean> {
    if (test(this.devicesOf(userId))) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        userId,
        test,
        resolve: (met) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(met);
        },
      };
      const timer = setTimeout(() => waiter.resolve(false), timeoutMs);
      this.waiters.add(waiter);
      void this.process.exited.then(() => waiter.resolve(false));
    });
  }

  private read(line: string): void {
    let printed: Printed;
    try {
      printed = JSON.parse(line) as Printed;
    } catch {
      return;
    }
    const key = `${printed.userId}:${printed.deviceId}`;
    const log = this.logs.get(key);
    if (!log) return;
    if (printed.applied) {
      const applied: AppliedLine = { version: printed.version!, crisis: printed.crisis!, appliedAt: printed.appliedAt!, provisional: printed.provisional };
      log.applied.push(applied);
      for (const w of [...this.waiters]) if (w.userId === log.userId && w.test(this.devicesOf(log.userId))) w.resolve(true);
    } else if (printed.pressed) {
      const press: PressLine = { userId: log.userId, deviceId: log.deviceId, at: printed.at!, storedAt: printed.storedAt ?? null, seq: printed.seq, error: printed.error };
      log.presses.push(press);
      this.pressing.get(key)?.shift()?.(press);
    } else if (printed.removed) {
      log.removed = true;
    }
  }

  /** Stops the process (its devices' logs stay). */
  stop(): Promise<void> {
    return this.process.stop();
  }
}

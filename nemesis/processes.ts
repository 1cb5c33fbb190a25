/**
 * The run's Node child processes: runtime nodes (`actors/main.ts`) and device processes
 * (`clients/devicesMain.ts`). Each runs in a process group of its own (a terminal's Ctrl-C reaches
 * only the run, which stops them in order), its stdout is read line by line, its stdin is a pipe (a
 * device process takes presses there), and everything it writes is appended to its own log file.
 * Every process started is kept in {@link startedProcesses} until it exits, for the run's clean-up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Lines of its output a process keeps in memory, for error messages. */
const TAIL_LINES = 50;
/** How long a stop waits after SIGTERM before SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;

/** Every child started and not yet exited. */
export const startedProcesses = new Set<ManagedProcess>();

/** A child process of the run. */
export class ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  readonly logFile: string;
  private readonly tail: string[] = [];
  private readonly listeners = new Set<(line: string) => void>();

  /** Starts `node <script> …args` from the project's root (or `root`) with `env` over the run's environment. */
  constructor(name: string, script: string, args: readonly string[], env: Record<string, string>, logFile: string, root = ROOT) {
    this.name = name;
    this.logFile = logFile;
    this.child = spawn(process.execPath, [join(root, script), ...args], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    startedProcesses.add(this);
    const log = openSync(logFile, 'a');
    // Written at once: the run may be killed right after.
    const keep = (chunk: Buffer) => writeSync(log, chunk);
    let buffer = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      keep(chunk);
      buffer += chunk.toString();
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        this.tail.push(line);
        if (this.tail.length > TAIL_LINES) this.tail.shift();
        for (const listener of this.listeners) listener(line);
      }
    });
    this.child.stderr!.on('data', keep);
    // A child that died leaves a broken pipe: what is written to it then is dropped.
    this.child.stdin!.on('error', () => undefined);
    this.exited = new Promise((resolve) =>
      this.child.once('close', () => {
        closeSync(log);
        startedProcesses.delete(this);
        resolve();
      }),
    );
  }

  /** The process id (undefined if the spawn failed). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Calls `listener` with each line of stdout from now on; returns the unsubscribe. */
  onLine(listener: (line: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Writes a line to the process's stdin. */
  send(line: string): void {
    if (this.running) this.child.stdin!.write(`${line}\n`);
  }

  /** Sends a signal (SIGSTOP, SIGCONT, …) if it still runs. */
  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** Resolves when a line passing `predicate` comes; rejects when the process exits first or after `timeoutMs`. */
  waitForLine(predicate: (line: string) => boolean, what: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        unsubscribe();
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => done(new Error(`${this.name}: no ${what} after ${timeoutMs} ms; last lines:\n${this.lastLines()}`)), timeoutMs);
      const unsubscribe = this.onLine((line) => predicate(line) && done());
      void this.exited.then(() => done(new Error(`${this.name} exited while waiting for ${what}; last lines:\n${this.lastLines()}`)));
    });
  }

  /** The last lines it printed. */
  lastLines(): string {
    return this.tail.slice(-15).join('\n');
  }

  /** kill -9; resolves once it exited. */
  async crash(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }

  /** SIGCONT (a paused process ignores SIGTERM), SIGTERM, then SIGKILL after 10 s; resolves once it exited. */
  async stop(): Promise<void> {
    this.signal('SIGCONT');
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Options of {@link startNode}. */
export interface NodeProcessOptions {
  id: string;
  /** The environment every node shares (NATS_URL, FM_REPLICAS, FM_PARTITIONS, FM_SECRETS, …). */
  env: Record<string, string>;
  logFile: string;
  /** How long to wait until it consumes and its callout replica answers. */
  readyTimeoutMs: number;
  /** Another checkout to run the node from (with its own node_modules). @default this one */
  root?: string;
}

/**
 * Starts a runtime node (`actors/main.ts`) and waits until it is consuming and its auth callout
 * replica is ready. The process is returned by `started` before that, so a node that never gets
 * ready is still stopped with the others.
 */
export async function startNode(options: NodeProcessOptions, started: (p: ManagedProcess) => void = () => {}): Promise<ManagedProcess> {
  const p = new ManagedProcess(options.id, 'actors/main.ts', [], { LOG_LEVEL: 'info', ...options.env, FM_NODE_ID: options.id }, options.logFile, options.root);
  started(p);
  await Promise.all([
    p.waitForLine((l) => l.includes('runtime node ready'), 'runtime node ready', options.readyTimeoutMs),
    p.waitForLine((l) => l.includes('auth callout ready'), 'auth callout ready', options.readyTimeoutMs),
  ]);
  return p;
}

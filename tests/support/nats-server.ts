/**
 * Starts a private nats-server from the project's nats.conf for integration tests.
 *
 * Each server gets free ports and a temp working dir. nats.conf's store_dir is relative, so it
 * resolves inside that dir: `-sd` cannot override it (nats-server 2.10 rejects a store_dir
 * set both by flag and by config as a duplicate), and a rewritten copy of the config would
 * break any relative include in it.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { connect as tcpConnect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CONFIG = join(ROOT, "nats.conf");
const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
/** Log kept for error messages; the startup banner fits comfortably. */
const LOG_LIMIT = 16_384;

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

let binary: Promise<string> | undefined;

/** Path of nats-server >= 2.10; the script may download it, so it runs once per process. */
function natsServerBinary(): Promise<string> {
  binary ??= promisify(execFile)("bash", [join(ROOT, "scripts/nats-server.sh")], { cwd: ROOT }).then(
    ({ stdout }) => stdout.trim(),
  );
  return binary;
}

/** A port that was free a moment ago; the OS picks it. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port assigned")),
      );
    });
  });
}

/** True once the client port accepts connections. */
function acceptsTcp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** JetStream is enabled; together with an open client port (opened after stream recovery), ready. */
async function jetStreamHealthy(httpPort: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
    return response.ok;
  } catch {
    return false;
  }
}

/** Starts nats-server from nats.conf on free ports with a temp store and waits until it is ready. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const [bin, port, httpPort, storeDir] = await Promise.all([
    natsServerBinary(),
    options.port ?? freePort(),
    freePort(),
    mkdtemp(join(tmpdir(), "fullmind-nats-")),
  ]);
  const args = ["-c", CONFIG, "-p", String(port), "-m", String(httpPort), ...(options.args ?? [])];
  let child: ChildProcess;
  let exited: Promise<void>;
  let stopped = false;

  const running = () => child.exitCode === null && child.signalCode === null;

  async function launch(): Promise<void> {
    let log = "";
    child = spawn(bin, args, { cwd: storeDir, stdio: ["ignore", "pipe", "pipe"] });
    const onOutput = (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-LOG_LIMIT);
    };
    child.stdout?.on("data", onOutput);
    child.stderr?.on("data", onOutput);
    exited = new Promise((resolve) => child.once("exit", () => resolve()));
    await new Promise((resolve, reject) => child.once("spawn", resolve).once("error", reject));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!((await acceptsTcp(port)) && (await jetStreamHealthy(httpPort)))) {
      if (!running()) throw new Error(`nats-server exited during startup:\n${log}`);
      if (Date.now() > deadline) {
        await terminate();
        throw new Error(`nats-server not ready after ${READY_TIMEOUT_MS} ms:\n${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async function terminate(): Promise<void> {
    if (!running()) return;
    child.kill("SIGTERM");
    // A hung (e.g. SIGSTOPped) server ignores SIGTERM until it resumes; SIGKILL does not wait.
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  try {
    await launch();
  } catch (error) {
    await rm(storeDir, { recursive: true, force: true });
    throw error;
  }

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    async stop() {
      if (stopped) return;
      stopped = true;
      await terminate();
      await rm(storeDir, { recursive: true, force: true });
    },
    kill(signal) {
      child.kill(signal);
    },
    async restart() {
      await terminate();
      await launch();
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
    if (!server) throw new Error("useNatsServer: the server starts in beforeAll");
    return server;
  };
}

import { existsSync } from "node:fs";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { expect, test } from "vitest";
import { asRuntime, useNatsServer } from "./support/nats-server.ts";

const server = useNatsServer();

test("serves JetStream from nats.conf, with msgID dedup, on nats-server >= 2.12", async () => {
  const nc = await connect({ ...asRuntime(), servers: server().url });
  try {
    const [major = 0, minor = 0] = (nc.info?.version ?? "").split(".").map(Number);
    expect(major > 2 || (major === 2 && minor >= 12), `version ${nc.info?.version}`).toBe(true);

    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "DEDUP", subjects: ["dedup.>"] });
    const js = jetstream(nc);
    expect((await js.publish("dedup.a", "x", { msgID: "event-1" })).duplicate).toBe(false);
    expect((await js.publish("dedup.a", "x", { msgID: "event-1" })).duplicate).toBe(true);
    expect((await jsm.streams.info("DEDUP")).state.messages).toBe(1);
  } finally {
    await nc.close();
  }
  // nats.conf's relative store_dir must resolve inside the temp dir, not the repository.
  expect(existsSync(join(server().storeDir, ".data/nats/jetstream"))).toBe(true);
});

test("restart after a crash keeps the URL and the stored messages", async () => {
  let nc = await connect({ ...asRuntime(), servers: server().url });
  await (await jetstreamManager(nc)).streams.add({ name: "CRASH", subjects: ["crash.>"] });
  await jetstream(nc).publish("crash.a", "x");
  await nc.close();

  server().kill("SIGKILL");
  await server().restart();

  nc = await connect({ ...asRuntime(), servers: server().url });
  try {
    expect((await (await jetstreamManager(nc)).streams.info("CRASH")).state.messages).toBe(1);
  } finally {
    await nc.close();
  }
});

test("stop removes the store dir", async () => {
  const { storeDir } = server();
  await server().stop();
  expect(existsSync(storeDir)).toBe(false);
});

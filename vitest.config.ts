import { defineConfig } from "vitest/config";

/** Vitest setup: integration tests start a real nats-server, hence the long timeouts. */
export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    // Secrets of the run's own (FM_SECRETS): role keys, store key, a test CA.
    globalSetup: ["tests/support/secrets.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Worker processes, not threads: tests spawn and signal nats-server children of their own.
    pool: "forks",
    // One file at a time, on any machine: an integration file starts servers, runtime nodes and
    // device processes of its own, and two heavy files side by side starve each other. Vitest's
    // default is cores − 1 workers: one here, but two or more on a bigger machine.
    fileParallelism: false,
    reporters: ["default", "json"],
    outputFile: { json: "test-results/vitest.json" },
  },
});

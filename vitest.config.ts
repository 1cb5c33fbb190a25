import { defineConfig } from "vitest/config";

/** Vitest setup: integration tests start a real nats-server, hence the long timeouts. */
export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Worker processes, not threads: tests spawn and signal nats-server children of their own.
    pool: "forks",
    reporters: ["default", "json"],
    outputFile: { json: "test-results/vitest.json" },
  },
});

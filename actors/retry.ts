/**
 * Retrying I/O that must eventually succeed (NATS away, a timeout): a commit that cannot complete
 * must not be skipped, or an event would be acknowledged without its effects. Fencing is not retried.
 */
import { FencedError } from './userStore.ts';

const FIRST_DELAY_MS = 50;
const MAX_DELAY_MS = 2_000;

/** Calls `fn` until it succeeds, backing off; rethrows a {@link FencedError} or when `stopping`. */
export async function retry<T>(fn: () => Promise<T>, host: { readonly stopping: boolean }): Promise<T> {
  for (let delay = FIRST_DELAY_MS; ; delay = Math.min(delay * 2, MAX_DELAY_MS)) {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof FencedError || host.stopping) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

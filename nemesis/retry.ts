/**
 * What the run's clients do while the cluster elects leaders: as a service would, they try again
 * after a transient failure (a timeout, "jetstream is not enabled", no responders) until it works or
 * the run gives up on it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isTransient } from '../transport/errors.ts';

/** Wait between two tries. */
const AGAIN_MS = 100;

/** Calls `fn` until it succeeds; throws a terminal error at once, a transient one once past `giveUpAt`. */
export async function whileTransient<T>(fn: () => Promise<T>, giveUpAt: number): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!isTransient(err) || Date.now() > giveUpAt) throw err;
      await sleep(AGAIN_MS);
    }
  }
}

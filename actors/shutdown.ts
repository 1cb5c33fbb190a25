/** Stopping a process cleanly on SIGINT (Ctrl-C) or SIGTERM, once, whichever comes first. */

/** Runs `stop` on the first SIGINT or SIGTERM, then exits 0, or 1 when `stop` fails. */
export function stopOnSignals(stop: () => Promise<void>, onError: (err: Error) => void = console.error): void {
  let stopping = false;
  const handler = () => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(0),
      (err: Error) => {
        onError(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

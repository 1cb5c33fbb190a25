/**
 * Entry point of a runtime node process: configuration from the environment (see README), one
 * node, and a clean stop on SIGINT or SIGTERM.
 */
import { configFromEnv } from './config.ts';
import { RuntimeNode } from './node.ts';

const node = await RuntimeNode.start(configFromEnv());
let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    node.stop().then(
      () => process.exit(0),
      (err: Error) => {
        node.log.error({ err: err.message }, 'stop failed');
        process.exit(1);
      },
    );
  });
}

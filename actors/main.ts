/**
 * Entry point of a runtime node process: configuration from the environment (see README), one
 * node with its auth callout replica, and a clean stop on SIGINT or SIGTERM.
 */
import { startNodeCallout } from '../auth/callout.ts';
import { configFromEnv, processTitle } from './config.ts';
import { RuntimeNode } from './node.ts';
import { stopOnSignals } from './shutdown.ts';

const config = configFromEnv();
process.title = processTitle(config);
const node = await RuntimeNode.start(config);
const callout = await startNodeCallout(config);
stopOnSignals(
  async () => {
    await node.stop();
    await callout?.stop();
  },
  (err) => node.log.error({ err: err.message }, 'stop failed'),
);

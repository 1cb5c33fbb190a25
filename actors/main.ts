/**
 * Entry point of a runtime node process: configuration from the environment (see README), one
 * node, and a clean stop on SIGINT or SIGTERM.
 */
import { configFromEnv, processTitle } from './config.ts';
import { RuntimeNode } from './node.ts';
import { stopOnSignals } from './shutdown.ts';

const config = configFromEnv();
process.title = processTitle(config);
const node = await RuntimeNode.start(config);
stopOnSignals(() => node.stop(), (err) => node.log.error({ err: err.message }, 'stop failed'));

/**
 * `npm run nemesis -- [--seed N] [--minutes M] [--out file.json] [--rate events/s] [--partitions P]`:
 * the fault-injection run (nemesis/main.ts). Exits 0 when the checker found no anomaly, 1 when it
 * found some (or the run had an error), 2 when the run could not run.
 */
import { main } from './main.ts';

process.exit(await main(process.argv.slice(2)));

/**
 * `npm run viz -- --out statechart.svg`: the user statechart as a standalone SVG, drawn from the
 * machine's definition (`viewer/statechart.ts`) for documents. Without `--out`, prints it.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { userMachine } from '../machines/userMachine.ts';
import { drawStatechart } from '../viewer/statechart.ts';

const { values } = parseArgs({ options: { out: { type: 'string', short: 'o' } } });
const svg = await drawStatechart(userMachine, { embedStyle: true });
if (values.out) {
  writeFileSync(values.out, svg);
  console.error(`statechart written to ${values.out} (${svg.length} bytes)`);
} else {
  process.stdout.write(svg);
}

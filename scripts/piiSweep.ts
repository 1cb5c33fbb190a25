/**
 * The PII sweep after the whole suite (issue 13): reads everything the tests left under
 * `test-results/` (every process's log, see tests/support/processes.ts, and any other artifact) and
 * looks for every fixture value of tests/support/pii.ts. Prints where each hit is (file, line,
 * what it is; never the value: this report is a log too) and how much it read; exits 1 on any hit,
 * and when the suite left no logs at all (the capture is broken, or the suite did not run).
 * `.ci/run` runs it after `npm test`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { needlesIn, NEEDLES } from '../tests/support/pii.ts';
import { LOG_DIR } from '../tests/support/processes.ts';

const ROOT = join(import.meta.dirname, '..');
const RESULTS = join(ROOT, 'test-results');
/**
 * vitest's own report: test names and, for a failed assertion, the values it compared, which
 * quote the fixtures. What the runner says about the tests, not what the system wrote.
 */
const RUNNER_REPORT = join(RESULTS, 'vitest.json');

/** Every file under `dir`, depth first; none when it does not exist. */
function filesUnder(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

const files = filesUnder(RESULTS).filter((f) => f !== RUNNER_REPORT);
const logs = files.filter((f) => f.startsWith(LOG_DIR)).length;

let lines = 0;
const skipped: string[] = [];
const hits: string[] = [];
for (const file of files) {
  const bytes = readFileSync(file);
  // A NUL byte: an image or other binary, which no text search can judge.
  if (bytes.includes(0)) {
    skipped.push(relative(ROOT, file));
    continue;
  }
  const text = bytes.toString('utf8');
  const fileLines = text.split('\n');
  lines += fileLines.length;
  // Line by line only in a file that has a hit somewhere.
  if (needlesIn(text).length === 0) continue;
  fileLines.forEach((line, i) => {
    const found = needlesIn(line);
    if (found.length) hits.push(`  ${relative(ROOT, file)}:${i + 1}: ${found.join(', ')}`);
  });
}

console.log(`pii sweep: ${files.length - skipped.length} files (${logs} process logs), ${lines} lines read for ${NEEDLES.length} fixture values`);
if (skipped.length) console.log(`pii sweep: not text, not read: ${skipped.join(', ')}`);
if (logs === 0) {
  console.log(`pii sweep: FAILED: no process logs under ${relative(ROOT, LOG_DIR)}: the capture is broken, or the suite did not run`);
  process.exit(1);
}
if (hits.length) {
  console.log(`pii sweep: FAILED: fixture PII on ${hits.length} line(s):\n${hits.join('\n')}`);
  process.exit(1);
}
console.log('pii sweep: no fixture PII in any log or artifact');

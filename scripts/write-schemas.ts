/**
 * Writes the JSON Schema of every wire message to `schemas/<name>.json`, for services in other
 * languages, and the NATS accounts file `nats-accounts.conf` (auth/roles.ts). With `--check`,
 * writes nothing and exits 1 when a committed file is stale or missing.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { renderAccountsConf } from '../auth/roles.ts';
import { WIRE_SCHEMAS } from '../transport/schemas.ts';
import { createTopology } from '../transport/topology.ts';

const ROOT = join(import.meta.dirname, '..');
const OUT = join(ROOT, 'schemas');
const ACCOUNTS_CONF = 'nats-accounts.conf';

/** The JSON Schema files as they should be: file name → content. */
export function renderSchemas(): Map<string, string> {
  const files = new Map<string, string>();
  for (const [name, schema] of Object.entries(WIRE_SCHEMAS)) {
    const json = z.toJSONSchema(schema, {
      target: 'draft-2020-12',
      io: 'input',
      unrepresentable: 'any',
      // Raw bytes travel as msgpack bin; JSON Schema can only describe them.
      override: (ctx) => {
        if (ctx.zodSchema._zod.def.type === 'custom') Object.assign(ctx.jsonSchema, { description: 'msgpack bin (raw bytes)' });
      },
    });
    files.set(`${name}.json`, `${JSON.stringify({ $id: `fullmind-sync/${name}`, ...json }, null, 2)}\n`);
  }
  return files;
}

if (import.meta.main) {
  const check = process.argv.includes('--check');
  const expected = new Map([...renderSchemas()].map(([file, text]) => [join('schemas', file), text]));
  expected.set(ACCOUNTS_CONF, renderAccountsConf(createTopology()));
  mkdirSync(OUT, { recursive: true });
  const current = (file: string) => {
    try {
      return readFileSync(join(ROOT, file), 'utf8');
    } catch {
      return undefined;
    }
  };
  const stale = [...expected].filter(([file, text]) => current(file) !== text);
  const extra = readdirSync(OUT)
    .filter((f) => f.endsWith('.json'))
    .map((f) => join('schemas', f))
    .filter((f) => !expected.has(f));
  if (check) {
    for (const [file] of stale) console.error(`stale: ${file}`);
    for (const file of extra) console.error(`not a wire message: ${file}`);
    if (stale.length || extra.length) {
      console.error('run `npm run schemas` and commit the result');
      process.exit(1);
    }
    console.log(`schemas/ and ${ACCOUNTS_CONF} are up to date (${expected.size} files)`);
  } else {
    for (const [file, text] of stale) writeFileSync(join(ROOT, file), text);
    console.log(`wrote ${stale.length} of ${expected.size} generated files`);
  }
}

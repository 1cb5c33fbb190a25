/**
 * Writes the JSON Schema of every wire message to `schemas/<name>.json`, for services in other
 * languages. With `--check`, writes nothing and exits 1 when a committed file is stale or missing.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { WIRE_SCHEMAS } from '../transport/schemas.ts';

const OUT = join(import.meta.dirname, '..', 'schemas');

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
  const expected = renderSchemas();
  mkdirSync(OUT, { recursive: true });
  const present = new Set(readdirSync(OUT).filter((f) => f.endsWith('.json')));
  const stale = [...expected].filter(([file, text]) => !present.has(file) || readFileSync(join(OUT, file), 'utf8') !== text);
  const extra = [...present].filter((f) => !expected.has(f));
  if (check) {
    for (const [file] of stale) console.error(`stale: schemas/${file}`);
    for (const file of extra) console.error(`not a wire message: schemas/${file}`);
    if (stale.length || extra.length) {
      console.error('run `npm run schemas` and commit the result');
      process.exit(1);
    }
    console.log(`schemas/ is up to date (${expected.size} files)`);
  } else {
    for (const [file, text] of stale) writeFileSync(join(OUT, file), text);
    console.log(`wrote ${stale.length} of ${expected.size} schema files to schemas/`);
  }
}

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderSchemas } from '../../scripts/write-schemas.ts';
import { WIRE_SCHEMAS } from '../../transport/schemas.ts';

const dir = join(import.meta.dirname, '..', '..', 'schemas');

describe('committed JSON Schemas', () => {
  const expected = renderSchemas();

  it('exist for every wire message and nothing else', () => {
    const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
    expect(files).toEqual(Object.keys(WIRE_SCHEMAS).map((n) => `${n}.json`).sort());
  });

  it.each([...expected.keys()])('%s is up to date (run `npm run schemas`)', (file) => {
    expect(readFileSync(join(dir, file), 'utf8')).toBe(expected.get(file));
  });

  it('describe the device view as closed: no additional properties at any level', () => {
    const view = JSON.parse(expected.get('device-view.json')!);
    const open: string[] = [];
    const walk = (node: unknown, path: string) => {
      if (typeof node !== 'object' || node === null) return;
      const n = node as Record<string, unknown>;
      if (n.type === 'object' && n.additionalProperties !== false) open.push(path || '(root)');
      for (const [k, v] of Object.entries(n)) walk(v, `${path}.${k}`);
    };
    walk(view, '');
    expect(open).toEqual([]);
  });
});

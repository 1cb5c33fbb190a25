/**
 * The FIFO queue (`actors/fifo.ts`), pure: against a plain array as the model, through pushes,
 * shifts past its compaction point, peeks and removals.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Fifo } from '../../actors/fifo.ts';

type Op = { push: number } | { shift: number } | { remove: number };

describe('Fifo', () => {
  it('behaves as an array with push, shift and filter, across compactions', () => {
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ push: fc.integer({ min: 1, max: 3_000 }) }),
      fc.record({ shift: fc.integer({ min: 1, max: 3_000 }) }),
      fc.record({ remove: fc.integer({ min: 2, max: 7 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 20 }), (ops) => {
        const fifo = new Fifo<number>();
        let model: number[] = [];
        let next = 0;
        for (const o of ops) {
          if ('push' in o) {
            for (let i = 0; i < o.push; i++) {
              fifo.push(next);
              model.push(next++);
            }
          } else if ('shift' in o) {
            for (let i = 0; i < o.shift; i++) {
              expect(fifo.peek()).toBe(model[0]);
              expect(fifo.shift()).toBe(model.shift());
            }
          } else {
            const which = (n: number) => n % o.remove === 0;
            expect(fifo.remove(which)).toEqual(model.filter(which));
            model = model.filter((n) => !which(n));
          }
          expect(fifo.length).toBe(model.length);
        }
      }),
      { numRuns: 200 },
    );
  });
});

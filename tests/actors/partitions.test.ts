/**
 * Partition assignment (`actors/partitions.ts`), pure: every node computes the same owners from the
 * same live members, no node gets more than its share, a join or a leave moves about one share, and
 * a node hands partitions over a few at a time.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assignPartitions, partitionOf, planMoves } from '../../actors/partitions.ts';

const nodeIds = fc.uniqueArray(fc.stringMatching(/^node-[a-z0-9]{1,6}$/), { minLength: 1, maxLength: 6 });

describe('assignPartitions', () => {
  it('gives every partition one live owner, at most ⌈P/n⌉ per node, whatever order the nodes are listed in', () => {
    fc.assert(
      fc.property(nodeIds, fc.integer({ min: 1, max: 128 }), (nodes, partitions) => {
        const owners = assignPartitions(partitions, nodes);
        expect(owners.size).toBe(partitions);
        const load = new Map<string, number>();
        for (const owner of owners.values()) {
          expect(nodes).toContain(owner);
          load.set(owner, (load.get(owner) ?? 0) + 1);
        }
        for (const n of load.values()) expect(n).toBeLessThanOrEqual(Math.ceil(partitions / nodes.length));
        expect(assignPartitions(partitions, [...nodes].reverse())).toEqual(owners);
      }),
    );
  });

  it('a node joining takes about its share; the others keep the rest', () => {
    const before = assignPartitions(64, ['node-1', 'node-2', 'node-3']);
    const after = assignPartitions(64, ['node-1', 'node-2', 'node-3', 'node-4']);
    const moved = [...before].filter(([p, owner]) => after.get(p) !== owner);
    expect(moved.length).toBeGreaterThanOrEqual(16);
    // Bounded loads move a little more than the share the new node takes, never a reshuffle.
    expect(moved.length).toBeLessThanOrEqual(28);
    expect([...after.values()].filter((o) => o === 'node-4').length).toBe(16);
  });

  it('a node leaving: only its partitions move, to the survivors', () => {
    const before = assignPartitions(64, ['node-1', 'node-2', 'node-3']);
    const after = assignPartitions(64, ['node-1', 'node-3']);
    for (const [p, owner] of before) if (owner !== 'node-2' && after.get(p) !== owner) expect.unreachable(`partition ${p} moved`);
    expect([...after.values()].every((o) => o !== 'node-2')).toBe(true);
  });

  it('no live node, no owners', () => {
    expect(assignPartitions(8, []).size).toBe(0);
  });
});

describe('planMoves', () => {
  const assignment = new Map([
    [0, 'a'],
    [1, 'a'],
    [2, 'b'],
    [3, 'b'],
    [4, 'b'],
  ]);

  it('takes what is assigned to it and held by no live node; releases what is assigned elsewhere, a few a tick', () => {
    expect(planMoves('a', assignment, new Set([2, 3, 4]), new Set([1]), 2)).toEqual({ acquire: [0], release: [2, 3] });
    expect(planMoves('b', assignment, new Set(), new Set([2, 3, 4]), 2)).toEqual({ acquire: [], release: [] });
  });
});

describe('partitionOf', () => {
  it('is FNV-1a 32 of the user id, modulo the partitions (as the server computes it)', () => {
    // FNV-1a 32 of "a" is 0xe40c292c.
    expect(partitionOf('a', 2 ** 31)).toBe(0xe40c292c % 2 ** 31);
    expect(partitionOf('usr_42', 64)).toBe(partitionOf('usr_42', 64));
  });
});

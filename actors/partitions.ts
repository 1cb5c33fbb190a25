/**
 * Partitions: users are hashed into a fixed number of partitions (the lanes store each event under
 * its user's partition), and who should own which partition is a pure decision every node takes
 * alike from the same live members: rendezvous hashing with bounded loads, and moves towards that a
 * few partitions at a time. The server enforces one owner at a time (a pinned client per partition
 * consumer); this only decides who asks, so that owners spread and move little when a node joins
 * or leaves.
 */

/** FNV-1a (32-bit) of a string: stable across processes and languages; nats-server partitions with it too. */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** The partition of a user: the one the lanes' subject transform stores its events under. */
export function partitionOf(userId: string, partitions: number): number {
  return fnv1a(userId) % partitions;
}

/** A node's weight for a partition: the highest weight wins it (rendezvous hashing). */
function weight(nodeId: string, partition: number): number {
  // Mixed once more so that node ids differing in their last character do not rank alike.
  return Math.imul(fnv1a(`${nodeId}#${partition}`) ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
}

/**
 * The owner of every partition among live nodes: each partition goes to the node that ranks it
 * highest among those still under ⌈partitions / nodes⌉, so no node owns more than its share.
 * Deterministic for a set of nodes, whatever order they are given in; a node joining or leaving
 * moves about one share of partitions. Empty when no node is live.
 */
export function assignPartitions(partitions: number, nodes: readonly string[]): Map<number, string> {
  const owners = new Map<number, string>();
  const live = [...new Set(nodes)].sort();
  if (live.length === 0) return owners;
  const cap = Math.ceil(partitions / live.length);
  const load = new Map(live.map((n) => [n, 0]));
  for (let p = 0; p < partitions; p++) {
    const ranked = live.map((n) => ({ n, w: weight(n, p) })).sort((a, b) => b.w - a.w || (a.n < b.n ? -1 : 1));
    const owner = ranked.find(({ n }) => load.get(n)! < cap)!.n;
    owners.set(p, owner);
    load.set(owner, load.get(owner)! + 1);
  }
  return owners;
}

/** What a node does with its partitions on one tick. */
export interface PartitionMoves {
  /** Partitions to start owning: assigned to this node and held by no live node. */
  acquire: number[];
  /** Partitions to hand over: held by this node, assigned to another. At most `limit` a tick. */
  release: number[];
}

/**
 * The moves one node makes towards the assignment. A partition is taken only once no live node
 * holds it (the releasing node unpins it first), and given up a few at a time, so a joining node
 * takes its share gradually instead of stopping the world.
 */
export function planMoves(
  self: string,
  assignment: ReadonlyMap<number, string>,
  held: ReadonlySet<number>,
  heldElsewhere: ReadonlySet<number>,
  limit: number,
): PartitionMoves {
  const acquire: number[] = [];
  const release: number[] = [];
  for (const [p, owner] of assignment) {
    if (owner === self && !held.has(p) && !heldElsewhere.has(p)) acquire.push(p);
    if (owner !== self && held.has(p) && release.length < limit) release.push(p);
  }
  return { acquire, release };
}

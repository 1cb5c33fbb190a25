/**
 * Partitions: users are hashed into a fixed number of partitions, and a node serves the users of
 * the partitions it owns. Ownership is explicit and recorded in KV, so a later multi-node deployment
 * can move partitions between nodes; the user snapshot's KV revision fences writes in between.
 */
import type { KV } from '@nats-io/kv';

/** FNV-1a (32-bit) of a string: stable across processes and languages, cheap. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** The partition of a user. */
export function partitionOf(userId: string, partitions: number): number {
  return fnv1a(userId) % partitions;
}

/** The partitions a node owns, resolved from its configuration. */
export function resolveOwned(owned: number[] | 'all', partitions: number): Set<number> {
  return new Set(owned === 'all' ? Array.from({ length: partitions }, (_, i) => i) : owned);
}

/** What the partitions bucket says about one partition. */
export interface PartitionClaim {
  nodeId: string;
  claimedAt: number;
}

/**
 * Records this node as owner of its partitions (`p.<n>` → claim). A single node takes over claims
 * left by an earlier run of itself or of a node that is gone; the snapshot fence keeps a stale
 * owner that is still running from writing.
 */
export async function claimPartitions(kv: KV, nodeId: string, owned: Iterable<number>, now: number): Promise<void> {
  const claim: PartitionClaim = { nodeId, claimedAt: now };
  await Promise.all([...owned].map((p) => kv.put(`p.${p}`, JSON.stringify(claim))));
}

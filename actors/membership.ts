/**
 * Cluster membership and partition claims, kept in JetStream KV. A node puts its key in the members
 * bucket every heartbeat (the bucket's age limit drops a key its node stopped renewing); every node
 * watches the bucket and counts a node live while it has seen a put from it within the members'
 * time to live, counted in its own heartbeats seen back (an expiry by age sends a watch nothing,
 * so silence is what tells). A node records
 * each partition it holds in the partitions bucket (`p.<n>` → claim), which every node follows, so
 * a node takes a partition only once no live node holds it, and operators, the viewer and the CLI
 * can see who serves a user.
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { Logger } from './logger.ts';
import { partitionOf } from './partitions.ts';

/** What a node records for a partition it holds. */
export interface PartitionClaim {
  nodeId: string;
  /** When it took the partition (ms since epoch). */
  since: number;
}

const claimKey = (partition: number) => `p.${partition}`;

/** Who serves a user: their partition, and the node whose claim on it is recorded (`null`: none). */
export interface ServingNode {
  partition: number;
  nodeId: string | null;
  /** When that node took the partition. */
  since: number | null;
}

/** Reads who serves a user from the partitions bucket (for operators: the viewer and the CLI). */
export async function servingNode(partitions: KV, userId: string, partitionCount: number): Promise<ServingNode> {
  const partition = partitionOf(userId, partitionCount);
  const entry = await partitions.get(claimKey(partition));
  const claim = entry?.operation === 'PUT' ? (entry.json() as PartitionClaim) : null;
  return { partition, nodeId: claim?.nodeId ?? null, since: claim?.since ?? null };
}

/** This node's membership: its heartbeat, the live members, and the claims of every node. */
export class Membership {
  readonly nodeId: string;
  private readonly members: KV;
  private readonly partitions: KV;
  private readonly log: Logger;
  private readonly ttlMs: number;
  private readonly claims = new Map<number, PartitionClaim>();
  /** The bucket revision of each claim in {@link claims}, as the watch delivered it. */
  private readonly claimRevisions = new Map<number, number>();
  /** The revision of each claim this node wrote and has not removed. */
  private readonly ownClaims = new Map<number, number>();
  /**
   * This node's own heartbeats seen back through the watch: the clock members age by. Wall time
   * would make every member look gone to a node whose watch fell behind (a busy event loop runs
   * its ownership timer before it reads the heartbeats waiting on the socket) or while the
   * bucket cannot store heartbeats (its leader being elected): that node would take everyone's
   * partitions. Counted in its own heartbeats, nobody ages while this node's view is stale.
   */
  private beats = 0;
  /** {@link beats} when this node last saw each member's heartbeat. */
  private readonly seen = new Map<string, number>();
  /** Heartbeats of this node that a member may miss and still be live: the members' TTL in heartbeats. */
  private missable = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly stopWatches: Array<() => void> = [];
  private readonly watching: Promise<void>[] = [];

  constructor(nodeId: string, members: KV, partitions: KV, ttlMs: number, log: Logger) {
    this.nodeId = nodeId;
    this.members = members;
    this.partitions = partitions;
    this.ttlMs = ttlMs;
    this.log = log;
  }

  /**
   * Joins: puts this node's key now and every `heartbeatMs`, and follows every member and claim.
   * Resolves once the members and claims present are known (see {@link follow}).
   */
  async start(heartbeatMs: number): Promise<void> {
    // First, so that the members bucket is never empty when it is followed.
    await this.beat();
    this.missable = Math.ceil(this.ttlMs / heartbeatMs);
    await this.follow(this.members, (key, value) => {
      if (key === this.nodeId && value) this.beats++;
      if (value) this.seen.set(key, this.beats);
      else this.seen.delete(key);
    });
    await this.follow(this.partitions, (key, value, revision) => {
      const partition = Number(key.slice(2));
      if (value) {
        this.claims.set(partition, JSON.parse(value) as PartitionClaim);
        this.claimRevisions.set(partition, revision);
      } else {
        this.claims.delete(partition);
        this.claimRevisions.delete(partition);
      }
    });
    this.heartbeat = setInterval(() => {
      this.beat().catch((err: Error) => this.log.warn({ err: err.message }, 'membership heartbeat failed'));
    }, heartbeatMs);
  }

  /** The live members' node ids: seen within the time to live, counted in this node's heartbeats (this one always). */
  live(): string[] {
    const live = [...this.seen].filter(([node, at]) => node === this.nodeId || this.beats - at <= this.missable).map(([node]) => node);
    return live.includes(this.nodeId) ? live : [...live, this.nodeId];
  }

  /** Partitions a live node other than this one holds. */
  heldElsewhere(live: readonly string[]): Set<number> {
    const others = new Set(live.filter((n) => n !== this.nodeId));
    return new Set([...this.claims].filter(([, c]) => others.has(c.nodeId)).map(([p]) => p));
  }

  /** The node holding a partition, as last recorded (it may be gone). */
  holder(partition: number): PartitionClaim | undefined {
    return this.claims.get(partition);
  }

  /**
   * Partitions the bucket says this node holds while it does not (`held`): a claim whose removal
   * failed when the node let the partition go (JetStream electing a leader), or one an earlier
   * process under this node id left. Every other node takes them for served, so they must go.
   */
  strayClaims(held: ReadonlySet<number>): number[] {
    return [...this.claims].filter(([p, c]) => c.nodeId === this.nodeId && !held.has(p)).map(([p]) => p);
  }

  /** Records that this node holds a partition. */
  async claim(partition: number): Promise<void> {
    const claim: PartitionClaim = { nodeId: this.nodeId, since: Date.now() };
    this.ownClaims.set(partition, await this.partitions.put(claimKey(partition), JSON.stringify(claim)));
    this.claims.set(partition, claim);
  }

  /**
   * Removes this node's claim on a partition, not another node's: the delete expects the revision
   * this node wrote (or, for a stray claim under its id, the revision the watch last saw). A node
   * that lost a partition would otherwise remove the claim of the node that took it, whenever its
   * own copy of the claims had not caught up yet; the partition would then look free while it is
   * served. Resolves whether it removed one.
   */
  async unclaim(partition: number): Promise<boolean> {
    const recorded = this.claims.get(partition)?.nodeId === this.nodeId ? this.claimRevisions.get(partition) : undefined;
    const revision = this.ownClaims.get(partition) ?? recorded;
    if (revision === undefined) return false;
    let removed = true;
    try {
      await this.partitions.delete(claimKey(partition), { previousSeq: revision });
      this.claims.delete(partition);
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence)) throw err;
      removed = false;
    }
    this.ownClaims.delete(partition);
    return removed;
  }

  /** Leaves: stops the heartbeat and removes this node's key, so others take over at once. */
  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    for (const stop of this.stopWatches) stop();
    await Promise.all(this.watching);
    await this.members.delete(this.nodeId).catch(() => undefined);
  }

  /**
   * Follows a bucket: each put with its value, each delete or purge with `null`. Resolves once the
   * values the bucket held when the watch started are applied: a node deciding before that would
   * see no members and no claims, and take partitions that live nodes hold.
   */
  private async follow(kv: KV, apply: (key: string, value: string | null, revision: number) => void): Promise<void> {
    // The watch marks the last of the values present at its start as its first update (an empty
    // bucket has none to wait for; a value stored between the two reads only makes one more).
    const present = (await kv.status()).values;
    const watcher = await kv.watch();
    const loaded = Promise.withResolvers<void>();
    if (present === 0) loaded.resolve();
    this.stopWatches.push(() => watcher.stop());
    this.watching.push(
      (async () => {
        for await (const entry of watcher) {
          apply(entry.key, entry.operation === 'PUT' ? entry.string() : null, entry.revision);
          if (entry.isUpdate) loaded.resolve();
        }
      })().finally(loaded.resolve),
    );
    await loaded.promise;
  }

  private async beat(): Promise<void> {
    await this.members.put(this.nodeId, JSON.stringify({ at: Date.now() }));
  }
}

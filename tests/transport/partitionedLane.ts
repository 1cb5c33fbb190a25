/**
 * A lane stream partitioned the way DESIGN §8 stores lanes: a subject transform files
 * `<lane>.<user>.<type>` under `<lane>.<partition>.<user>.<type>`, the partition being the
 * server's FNV-1a hash of the user token. For the transport tests that pin down what nats-server
 * does with it (hash, schedules, pinned consumers), against a real server.
 */
import type { StreamConfig } from '@nats-io/jetstream';
import { partitionOf } from '../../actors/partitions.ts';

/** Partitions of the test lanes (the runtime's default). */
export const PARTITIONS = 64;

/** Subjects of a partitioned lane with the prefix `lane` (e.g. `fm.evt`). */
export function laneSubjects(lane: string) {
  return {
    /** What publishers use: `<lane>.<user>.<type>`. */
    published: (userId: string, type: string) => `${lane}.${userId}.${type}`,
    /** What the stream stores it under: `<lane>.<partition>.<user>.<type>`. */
    stored: (userId: string, type: string) => `${lane}.${partitionOf(userId, PARTITIONS)}.${userId}.${type}`,
    /** A partition consumer's filter. */
    partition: (p: number) => `${lane}.${p}.>`,
  };
}

/** The stream config: `extra` subjects (e.g. schedules) are stored as published. */
export function partitionedLane(name: string, lane: string, extra: Partial<StreamConfig> = {}): Partial<StreamConfig> & { name: string } {
  return {
    ...extra,
    name,
    subjects: [`${lane}.*.*`, ...(extra.subjects ?? [])],
    subject_transform: { src: `${lane}.*.*`, dest: `${lane}.{{partition(${PARTITIONS},1)}}.{{wildcard(1)}}.{{wildcard(2)}}` },
  };
}

/** `count` user ids (`${prefix}<n>`, smallest n first) that fall in partition `p`. */
export function usersIn(p: number, count: number, prefix = 'u'): string[] {
  const users: string[] = [];
  for (let n = 0; users.length < count; n++) if (partitionOf(`${prefix}${n}`, PARTITIONS) === p) users.push(`${prefix}${n}`);
  return users;
}

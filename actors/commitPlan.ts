/**
 * What a user's commit writes, decided apart from the I/O that writes it: the view version, which
 * devices get the view, which lost it, the record with its outbox, the deadline, and what a previous
 * owner left unfinished. `UserActor` performs the plan; everything here is pure and deterministic.
 *
 * Versions: a view goes out at version + 1 only when what the devices see changed. A commit saves
 * its record before it publishes, so a crash leaves at most a record whose output is unpublished
 * (its outbox, finished by the next owner). Devices can still hold a version the record does not
 * know when views went out without their record (a runtime that published first, as this one did
 * before it ran on several nodes): a version is never reused, because a device holding it would
 * skip different content under it as not newer. When the devices already show the current content
 * under that version it is adopted, otherwise the current view goes to all of them above it.
 */
import { isDeepStrictEqual } from 'node:util';
import { deadlinesEqual, pendingDeadline, type Deadline } from '../machines/deadlines.ts';
import type { UserView } from '../machines/deviceView.ts';
import type { SafetyContent } from '../machines/safety.ts';
import type { UserSnapshot } from '../machines/userMachine.ts';
import { toPersisted, type UserState } from '../machines/userState.ts';
import type { AuditRecord, DeviceView } from '../transport/schemas.ts';
import type { Lane } from '../transport/subjects.ts';
import { sameDeviceContent } from '../transport/viewWire.ts';
import type { CrisisLine } from './config.ts';
import type { Outbox, UserRecord } from './userRecord.ts';

/** What the devices were last told (for a new user: its initial state, before any view went out). */
export interface Committed {
  snapshot: UserSnapshot;
  /** The view of `snapshot`, derived once for this commit. */
  view: UserView;
  safety: SafetyContent;
  devices: readonly string[];
}

/** Everything a commit decides from. */
export interface CommitInput {
  userId: string;
  committed: Committed;
  /** The user's state after the batch, and its view (derived once). */
  state: UserState;
  view: UserView;
  safety: SafetyContent;
  /** Version of the last view published, as the actor knows it. */
  viewVersion: number;
  lastSeq: Readonly<Record<Lane, number>>;
  /** The batch's audit records (their view version is set by the plan). */
  audits: readonly AuditRecord[];
  /**
   * The view each device last stored (`null`: none), read when the batch may follow a crash or a
   * fence (it holds a redelivery); `null` when not read.
   */
  stored: ReadonlyMap<string, DeviceView | null> | null;
  /** The record loaded at activation while its output may be unpublished (first commit only). */
  unfinished: UserRecord | null;
  crisisLines: readonly CrisisLine[];
}

/** What to write. */
export interface CommitPlan {
  /** The record to save, fenced by the revision read. */
  record: UserRecord;
  /** The output to publish with it (also in `record.outbox` when not empty). */
  outbox: Outbox;
  /** Version of the view in `outbox`, and the version the devices hold after the commit. */
  version: number;
  /** The loaded record's output to publish again before anything else; `null`: nothing to finish. */
  resume: Outbox | null;
  /** The new pending deadline when it changed (`null`: none any more); `undefined`: unchanged. */
  deadline: Deadline | null | undefined;
  /** Devices held a version the record did not know (a previous owner's orphaned views). */
  orphaned: boolean;
}

/** The view one device applies. */
export function deviceViewOf(
  userId: string,
  deviceId: string,
  version: number,
  view: UserView,
  safety: SafetyContent,
  crisisLines: readonly CrisisLine[],
  issuedAt: number,
): DeviceView {
  return { userId, deviceId, version, issuedAt, ...view, crisisLines: [...crisisLines], safety };
}

/** Plans a commit. */
export function planCommit(input: CommitInput): CommitPlan {
  const { userId, committed, state, view, safety, stored, unfinished } = input;
  const devices = state.snapshot.context.devices;
  let version = input.viewVersion;
  let orphaned = false;
  let adopted = false;
  let resume: Outbox | null = null;
  if (stored) {
    const sent = Math.max(0, ...[...stored.values()].map((v) => v?.version ?? 0));
    // The loaded record's own output may not have landed either: publish it again, with its
    // views only if no device holds them yet (audit records are deduplicated by id).
    if (unfinished?.outbox) resume = sent < version ? unfinished.outbox : { ...unfinished.outbox, viewDevices: [] };
    if (sent > version) {
      orphaned = true;
      version = sent;
      const current = (d: string) => deviceViewOf(userId, d, sent, view, safety, input.crisisLines, 0);
      adopted = devices.every((d) => {
        const held = stored.get(d);
        return held?.version === sent && sameDeviceContent(held, current(d));
      });
    }
  }
  const changed =
    (orphaned && !adopted) ||
    (!adopted && (version === 0 || !isDeepStrictEqual(safety, committed.safety) || !isDeepStrictEqual(view, committed.view)));
  if (changed) version++;
  const known = committed.devices;
  const outbox: Outbox = {
    viewDevices: changed ? [...devices] : devices.filter((d) => !known.includes(d)),
    audits: input.audits.map((a) => ({ ...a, viewVersion: changed ? version : null })),
    removed: known.filter((d) => !devices.includes(d)),
  };
  const record: UserRecord = { state: toPersisted(state), safety, viewVersion: version, lastSeq: { ...input.lastSeq } };
  if (outbox.viewDevices.length || outbox.audits.length || outbox.removed.length) record.outbox = outbox;
  const deadline = pendingDeadline(state.snapshot);
  return {
    record,
    outbox,
    version,
    resume,
    deadline: deadlinesEqual(pendingDeadline(committed.snapshot), deadline) ? undefined : deadline,
    orphaned,
  };
}

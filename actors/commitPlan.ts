/**
 * What a user's commit writes, decided apart from the I/O that writes it: the view version and
 * whether the view goes out, the record with its outbox, the deadline, and what a previous owner
 * left unfinished. `UserActor` performs the plan; everything here is pure and deterministic.
 *
 * Versions: a view goes out at version + 1 only when what the devices see changed (entitlements,
 * safety content, or the list of devices). A commit saves its record before it publishes, so a
 * crash leaves at most a record whose output is unpublished (its outbox, finished by the next
 * owner). The stored view can still have a version the record does not know when it went out
 * without its record (a runtime that published first, as this one did before it ran on several
 * nodes): a version is never reused, because a device holding it would skip different content
 * under it as not newer. When the stored view already shows the current content under that version
 * it is adopted, otherwise the current view goes out above it.
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
   * The user's last stored view (`null`: none), read when the batch may follow a crash or a fence
   * (it holds a redelivery); `undefined` when not read.
   */
  stored: DeviceView | null | undefined;
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
  /** The stored view had a version the record did not know (a previous owner's orphaned view). */
  orphaned: boolean;
  /** Devices the committed view listed and this one does not: revoked once the view is stored. */
  removedDevices: string[];
}

/** The view every device of a user applies. */
export function deviceViewOf(
  userId: string,
  devices: readonly string[],
  version: number,
  view: UserView,
  safety: SafetyContent,
  crisisLines: readonly CrisisLine[],
  issuedAt: number,
): DeviceView {
  return { userId, version, devices: [...devices], issuedAt, ...view, crisisLines: [...crisisLines], safety };
}

/** Plans a commit. */
export function planCommit(input: CommitInput): CommitPlan {
  const { userId, committed, state, view, safety, stored, unfinished } = input;
  const devices = state.snapshot.context.devices;
  let version = input.viewVersion;
  let orphaned = false;
  let adopted = false;
  let resume: Outbox | null = null;
  if (stored !== undefined) {
    const sent = stored?.version ?? 0;
    // The loaded record's own output may not have landed either: publish it again, with its view
    // only if it is not stored yet (audit records are deduplicated by id).
    if (unfinished?.outbox) resume = sent < version ? unfinished.outbox : { ...unfinished.outbox, view: false };
    if (stored && sent > version) {
      orphaned = true;
      version = sent;
      adopted = sameDeviceContent(stored, deviceViewOf(userId, devices, sent, view, safety, input.crisisLines, 0));
    }
  }
  const changed =
    (orphaned && !adopted) ||
    (!adopted &&
      (version === 0 ||
        !isDeepStrictEqual(safety, committed.safety) ||
        !isDeepStrictEqual(view, committed.view) ||
        !isDeepStrictEqual(devices, committed.devices)));
  if (changed) version++;
  const outbox: Outbox = { view: changed, audits: input.audits.map((a) => ({ ...a, viewVersion: changed ? version : null })) };
  const record: UserRecord = { state: toPersisted(state), safety, viewVersion: version, lastSeq: { ...input.lastSeq } };
  if (outbox.view || outbox.audits.length) record.outbox = outbox;
  const deadline = pendingDeadline(state.snapshot);
  return {
    record,
    outbox,
    version,
    resume,
    deadline: deadlinesEqual(pendingDeadline(committed.snapshot), deadline) ? undefined : deadline,
    orphaned,
    removedDevices: committed.devices.filter((d) => !devices.includes(d)),
  };
}

/**
 * The nemesis checker: pure, over what the system stored (the two lanes with their sequences, dead
 * letters, the audit stream in its order, each user's record and stored view) and what the devices
 * printed (views applied, crisis presses), never the runtime's memory or metrics. It reports each
 * anomaly by kind, with a few examples each (user, lane, event ids, sequences; never an event's
 * content), and the crisis press → shown-on-every-device latency per fault kind.
 *
 * A user's record keeps the ids of the last {@link DEDUP_WINDOW} events it applied, in the order
 * applied: while a user has fewer, that list is the user's whole history as applied, and the checker
 * folds the statechart over it (the nemesis load keeps every user under it). Beyond it, only the
 * checks that need no history run (sequences, audit order and chain, views, devices).
 */
import { isDeepStrictEqual } from 'node:util';
import { deviceViewOf } from '../actors/commitPlan.ts';
import type { UserRecord } from '../actors/userRecord.ts';
import { deriveView, inCrisis, subscriptionStateOf } from '../machines/deviceView.ts';
import type { UserEvent } from '../machines/events.ts';
import { applySafetyEvent, EMPTY_SAFETY } from '../machines/safety.ts';
import type { UserSnapshot } from '../machines/userMachine.ts';
import { applyEvent, createUserState, DEDUP_WINDOW, fromPersisted, toPersisted, type UserState } from '../machines/userState.ts';
import type { DeviceView } from '../transport/schemas.ts';
import type { Lane } from '../transport/subjects.ts';
import { sameDeviceContent } from '../transport/viewWire.ts';

// ─── what the checker reads ────────────────────────────────────────────────────────────────────

/** A message stored in a lane stream. */
export interface StoredEvent {
  lane: Lane;
  /** Its sequence in the lane's stream. */
  seq: number;
  userId: string;
  /** The type its subject names. */
  type: string;
  /** The event, or null when the body is not a valid event (the runtime dead-letters it). */
  event: UserEvent | null;
}

/** A dead letter. */
export interface StoredDeadLetter {
  reason: string;
  /** The user and type its subject names, when it is an event subject. */
  userId: string | null;
  type: string | null;
  /** The event's id, from the body it kept; null when it kept none (redacted: personal content). */
  eventId: string | null;
  /** What was wrong (the runtime never quotes a value in it). */
  detail: string;
}

/** A state's two regions, as audit records name them. */
export interface Regions {
  subscription: string;
  crisis: string;
}

/** An audit record, in the audit stream's order. */
export interface StoredAudit {
  /** Its sequence in the audit stream. */
  auditSeq: number;
  userId: string;
  eventId: string;
  eventType: string;
  from: Regions;
  to: Regions;
  /** The lane the event came down and its sequence there (absent from records that do not keep them). */
  lane?: Lane;
  seq?: number;
}

/** A user's record and last stored view. */
export interface StoredUser {
  userId: string;
  record: UserRecord | null;
  /** Why the stored record could not be read. */
  recordError?: string;
  /** The last view stored for the user (from the views stream's leader). */
  view: DeviceView | null;
  viewError?: string;
}

/** A view a device applied, or (`provisional`) the crisis of a press it heard shown over the view it held. */
export interface AppliedLine {
  version: number;
  crisis: boolean;
  appliedAt: number;
  provisional?: boolean;
}

/** A crisis press on a device: when it was pressed, and when JetStream acknowledged it (null: never, to the device). */
export interface PressLine {
  userId: string;
  deviceId: string;
  at: number;
  storedAt: number | null;
  seq?: number;
  error?: string;
}

/** What one device printed. */
export interface DeviceLog {
  userId: string;
  deviceId: string;
  applied: AppliedLine[];
  presses: PressLine[];
  /** It learned that it was removed. */
  removed: boolean;
}

/** A fault as it happened: the kind, what it hit, and from when until it healed (ms since the epoch). */
export interface FaultWindow {
  kind: string;
  target: string;
  start: number;
  end: number;
}

/** A line of a log that holds personal data (the run sweeps every log it kept). */
export interface PiiHit {
  file: string;
  line: number;
  labels: string[];
}

/** Everything the checker reads. */
export interface CheckInput {
  events: readonly StoredEvent[];
  deadLetters: readonly StoredDeadLetter[];
  audit: readonly StoredAudit[];
  users: readonly StoredUser[];
  devices: readonly DeviceLog[];
  faults: readonly FaultWindow[];
  pii?: readonly PiiHit[];
  /** Problems of the run itself (not drained, a process that failed, …): each makes the run fail. */
  runErrors?: ReadonlyArray<{ kind: string; detail: string }>;
}

/** Options of {@link check}. */
export interface CheckOptions {
  /** A crisis shown on every device later than this after the press is late. @default 10000 */
  crisisDeadlineMs?: number;
  /** A press this long after a fault healed still counts as during it (elections and catch-up outlast the fault). @default 5000 */
  attributionTailMs?: number;
  /** Examples kept per kind. @default 5 */
  examples?: number;
  /**
   * Kinds reported but not failing the run: what a target of a later issue covers, while it is not
   * met yet (CI's run tolerates late crises until the crisis path stops waiting for elections).
   * @default none
   */
  tolerated?: readonly AnomalyKind[];
}

// ─── what it reports ───────────────────────────────────────────────────────────────────────────

/** The kinds of anomaly. */
export const ANOMALY_KINDS = [
  /** A valid stored event never applied: above the record's last sequence of its lane, or missing from its history. */
  'lost',
  /** An event applied twice: twice in the record's history, or two audit records. */
  'applied_twice',
  /** A user's events of one lane applied out of the lane's order (the record's history, or the audit's sequences). */
  'out_of_order',
  /** An audit record whose `from` is not the previous record's `to`, or audit records that are not the fold's transitions. */
  'wrong_transition',
  /** The record's state is not the statechart's fold of the events it says it applied. */
  'state_mismatch',
  /** The stored view is older than the record's view version (a fenced owner's, or one never published). */
  'stale_view',
  /** The stored view is ahead of the record, or does not show the record's state. */
  'view_mismatch',
  /** A device's last applied view is not the stored one, after settling (or it went back to an older one). */
  'device_diverged',
  /** A crisis press shown on every device of its user, but later than the deadline. */
  'crisis_late',
  /** A crisis press never shown on every device of its user. */
  'crisis_never_shown',
  /**
   * A valid event the runtime dead-lettered (gave up on it, or rate-limited it): not lost by
   * definition, yet the load sends none the statechart refuses, nor presses fast enough to be limited.
   */
  'dead_lettered',
  /** Personal data in a log. */
  'pii_in_logs',
] as const;
/** A kind of anomaly. */
export type AnomalyKind = (typeof ANOMALY_KINDS)[number];

/** One anomaly, by ids and sequences (never content). */
export interface Anomaly {
  userId?: string;
  deviceId?: string;
  lane?: Lane;
  eventIds?: string[];
  seqs?: number[];
  detail: string;
}

/** Press → crisis shown on every device of the user, for the presses during one fault kind. */
export interface CrisisLatency {
  presses: number;
  /** Shown on every device. */
  shown: number;
  neverShown: number;
  /** Shown, later than the deadline. */
  late: number;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  /** Press → stored in the crisis lane (the device's part: a device on a cut-off server waits here). */
  storedP50Ms: number | null;
  storedMaxMs: number | null;
  /**
   * Crisis continuity: of each fault of the kind, the first press made while it lasted (or just
   * healed), press → shown on every device; the slowest of them (null: none shown, or no press).
   */
  firstAfterFaultMs: number | null;
}

/** One press, as the checker measured it. */
export interface PressOutcome {
  userId: string;
  deviceId: string;
  /** The fault it is put down to ("none"). */
  fault: string;
  at: string;
  /** Press → stored (acknowledged to the device); null: never acknowledged. */
  storedMs: number | null;
  /** Press → shown on every device; null: never. */
  shownMs: number | null;
}

/** What the checker found. */
export interface CheckResult {
  ok: boolean;
  anomalies: Record<AnomalyKind, { count: number; examples: Anomaly[] }>;
  /** Problems of the run (checks that could not run, or the run's own failures), by kind: each fails the run. */
  runErrors: Record<string, { count: number; examples: string[] }>;
  /** What limited a check without failing it (a user whose history outgrew the record's window), by kind. */
  notes: Record<string, { count: number; examples: string[] }>;
  /** Crisis latency per fault kind ("none": no fault at the press). */
  crisis: Record<string, CrisisLatency>;
  /** The slowest presses (never shown first), to read what a fault did. */
  slowestPresses: PressOutcome[];
  totals: {
    users: number;
    /** Users whose whole history the record keeps: every check ran. */
    usersFullyChecked: number;
    storedEvents: Record<Lane, number>;
    /** Stored twice under one id (a publish retried after JetStream's duplicate window). */
    storedTwice: number;
    deadLetters: Record<string, number>;
    auditRecords: number;
    devices: number;
    presses: number;
  };
}

// ─── the check ─────────────────────────────────────────────────────────────────────────────────

/** Collects anomalies: every one counted, the first few kept. */
class Findings {
  readonly anomalies = Object.fromEntries(ANOMALY_KINDS.map((k) => [k, { count: 0, examples: [] as Anomaly[] }])) as CheckResult['anomalies'];
  readonly runErrors: CheckResult['runErrors'] = {};
  readonly notes: CheckResult['notes'] = {};
  private readonly keep: number;
  constructor(keep: number) {
    this.keep = keep;
  }

  add(kind: AnomalyKind, anomaly: Anomaly): void {
    const entry = this.anomalies[kind];
    entry.count++;
    if (entry.examples.length < this.keep) entry.examples.push(anomaly);
  }

  runError(kind: string, detail: string): void {
    this.tally(this.runErrors, kind, detail);
  }

  note(kind: string, detail: string): void {
    this.tally(this.notes, kind, detail);
  }

  private tally(into: Record<string, { count: number; examples: string[] }>, kind: string, detail: string): void {
    const entry = (into[kind] ??= { count: 0, examples: [] });
    entry.count++;
    if (entry.examples.length < this.keep) entry.examples.push(detail);
  }
}

const regionsOf = (snapshot: UserSnapshot): Regions => ({ subscription: subscriptionStateOf(snapshot), crisis: inCrisis(snapshot) ? 'active' : 'stable' });
const crisisLevel = (snapshot: UserSnapshot) => snapshot.context.crisis?.level ?? null;
const sameRegions = (a: Regions, b: Regions) => a.subscription === b.subscription && a.crisis === b.crisis;
const showRegions = (r: Regions) => `${r.subscription}/${r.crisis}`;

/** A transition the fold made: what the runtime audits (a region changed, or the crisis level). */
interface Transition {
  eventId: string;
  from: Regions;
  to: Regions;
}

/** Everything stored about one user. */
interface UserData {
  userId: string;
  events: StoredEvent[];
  audits: StoredAudit[];
  stored: StoredUser | undefined;
  devices: DeviceLog[];
}

/** Checks what was stored; see the module comment. */
export function check(input: CheckInput, options: CheckOptions = {}): CheckResult {
  const findings = new Findings(options.examples ?? 5);
  const deadline = options.crisisDeadlineMs ?? 10_000;
  const tail = options.attributionTailMs ?? 5_000;

  const deadLettered = new Set(input.deadLetters.flatMap((d) => (d.eventId ? [d.eventId] : [])));
  /** Dead letters that kept no body, per `user type`: as many unapplied events of that user and type are accounted for. */
  const redacted = new Map<string, number>();
  for (const d of input.deadLetters) if (!d.eventId && d.userId && d.type) redacted.set(`${d.userId} ${d.type}`, (redacted.get(`${d.userId} ${d.type}`) ?? 0) + 1);

  const users = new Map<string, UserData>();
  const user = (userId: string) => {
    let u = users.get(userId);
    if (!u) users.set(userId, (u = { userId, events: [], audits: [], stored: undefined, devices: [] }));
    return u;
  };
  for (const e of input.events) user(e.userId).events.push(e);
  for (const a of input.audit) user(a.userId).audits.push(a);
  for (const s of input.users) user(s.userId).stored = s;
  for (const d of input.devices) user(d.userId).devices.push(d);

  let usersFullyChecked = 0;
  let storedTwice = 0;
  /** The fault an event was published in (by its time at the source), for an anomaly's detail. */
  const during = (at: number) => {
    const kind = faultAt(at, input.faults, tail);
    return kind === 'none' ? '' : ` (published during ${kind})`;
  };
  for (const u of users.values()) {
    const result = checkUser(u, { findings, deadLettered, redacted, during });
    if (result.fullyChecked) usersFullyChecked++;
    storedTwice += result.storedTwice;
  }

  for (const d of input.deadLetters) {
    const stored = d.eventId ? input.events.some((e) => e.event?.id === d.eventId) : d.userId !== null;
    if (stored) findings.add('dead_lettered', { userId: d.userId ?? undefined, eventIds: d.eventId ? [d.eventId] : undefined, detail: `${d.type ?? '?'}: ${d.reason}: ${d.detail}` });
  }
  const { crisis, slowest } = checkCrises(input, findings, deadline, tail);
  for (const hit of input.pii ?? []) findings.add('pii_in_logs', { detail: `${hit.file}:${hit.line}: ${hit.labels.join(', ')}` });
  for (const e of input.runErrors ?? []) findings.runError(e.kind, e.detail);

  const deadLetters: Record<string, number> = {};
  for (const d of input.deadLetters) deadLetters[d.reason] = (deadLetters[d.reason] ?? 0) + 1;
  const tolerated = new Set(options.tolerated ?? []);
  const anomalyCount = ANOMALY_KINDS.filter((k) => !tolerated.has(k)).reduce((sum, k) => sum + findings.anomalies[k].count, 0);
  return {
    ok: anomalyCount === 0 && Object.keys(findings.runErrors).length === 0,
    anomalies: findings.anomalies,
    runErrors: findings.runErrors,
    notes: findings.notes,
    crisis,
    slowestPresses: slowest,
    totals: {
      users: users.size,
      usersFullyChecked,
      storedEvents: { normal: input.events.filter((e) => e.lane === 'normal').length, crisis: input.events.filter((e) => e.lane === 'crisis').length },
      storedTwice,
      deadLetters,
      auditRecords: input.audit.length,
      devices: input.devices.length,
      presses: input.devices.reduce((n, d) => n + d.presses.length, 0),
    },
  };
}

/** Checks one user: its events against its record, its audit records, its stored view and its devices. */
function checkUser(
  u: UserData,
  ctx: { findings: Findings; deadLettered: ReadonlySet<string>; redacted: Map<string, number>; during: (at: number) => string },
): { fullyChecked: boolean; storedTwice: number } {
  const { findings, deadLettered } = ctx;
  const { userId } = u;
  // The first stored copy of each id is the event; a later copy is the same event again.
  const byId = new Map<string, StoredEvent>();
  let storedTwice = 0;
  for (const e of [...u.events].sort((a, b) => a.seq - b.seq)) {
    if (!e.event) continue;
    if (byId.has(e.event.id)) storedTwice++;
    else byId.set(e.event.id, e);
  }
  const valid = [...byId.values()].filter((e) => !deadLettered.has(e.event!.id));
  const record = u.stored?.record ?? null;
  if (u.stored?.recordError) findings.runError('unreadable_record', `${userId}: ${u.stored.recordError}`);
  if (u.stored?.viewError) findings.runError('unreadable_view', `${userId}: ${u.stored.viewError}`);

  /** Lost events, with why, before the redacted dead letters account for some. */
  const lost = new Map<string, { e: StoredEvent; why: string[] }>();
  const loseEvent = (e: StoredEvent, why: string) => {
    const entry = lost.get(e.event!.id) ?? { e, why: [] };
    entry.why.push(why);
    lost.set(e.event!.id, entry);
  };

  let expected: Transition[] | undefined;
  let state: UserState | undefined;
  const fullyChecked = record !== null && record.state.recentEventIds.length < DEDUP_WINDOW;
  if (!record) {
    for (const e of valid) loseEvent(e, 'the user has no record');
  } else {
    const applied = record.state.recentEventIds;
    for (const e of valid) {
      if (e.seq <= record.lastSeq[e.lane]) continue;
      const why = `seq ${e.seq} is above the record's last ${e.lane} seq ${record.lastSeq[e.lane]}`;
      if (fullyChecked && applied.includes(e.event!.id)) findings.add('state_mismatch', { userId, lane: e.lane, eventIds: [e.event!.id], seqs: [e.seq], detail: `applied, yet its ${why}` });
      else loseEvent(e, why);
    }
    const seen = new Set<string>();
    for (const id of applied) {
      if (seen.has(id)) findings.add('applied_twice', { userId, eventIds: [id], detail: 'twice in the record\'s applied history' });
      seen.add(id);
    }
    if (!fullyChecked) {
      findings.note('history_beyond_window', `${userId}: the record keeps its last ${applied.length} ids only: no fold, only the sequence, audit, view and device checks`);
    } else {
      ({ expected, state } = foldHistory(u, record, byId, valid, { findings, deadLettered, loseEvent, during: ctx.during }));
    }
  }
  for (const { e, why } of lost.values()) {
    const key = `${userId} ${e.type}`;
    const excused = ctx.redacted.get(key) ?? 0;
    if (excused > 0) {
      ctx.redacted.set(key, excused - 1);
      continue;
    }
    findings.add('lost', { userId, lane: e.lane, eventIds: [e.event!.id], seqs: [e.seq], detail: `${e.type}${ctx.during(e.event!.at)}: ${why.join('; ')}` });
  }

  checkAudit(u, expected, findings);
  if (record) checkView(u, record, state, findings);
  checkDevices(u, findings);
  return { fullyChecked, storedTwice };
}

/**
 * Folds the statechart over the record's applied history (the whole of it), with the valid events
 * it lacks put where their lane's order places them: they must be no-ops there (stale payments,
 * duplicates), else they were lost. Checks the lanes' order along the history and the record's
 * state against the fold; returns the fold's transitions and state.
 */
function foldHistory(
  u: UserData,
  record: UserRecord,
  byId: ReadonlyMap<string, StoredEvent>,
  valid: readonly StoredEvent[],
  ctx: { findings: Findings; deadLettered: ReadonlySet<string>; loseEvent: (e: StoredEvent, why: string) => void; during: (at: number) => string },
): { expected: Transition[]; state: UserState } {
  const { findings } = ctx;
  const { userId } = u;
  const history: StoredEvent[] = [];
  for (const id of new Set(record.state.recentEventIds)) {
    const e = byId.get(id);
    if (e) history.push(e);
    else
      findings.add('state_mismatch', {
        userId,
        eventIds: [id],
        detail: ctx.deadLettered.has(id) ? 'the record applied an event that was dead-lettered' : 'the record applied an event no lane stored',
      });
  }
  // Each lane's events in the history must follow the lane's order.
  for (const lane of ['normal', 'crisis'] as const) {
    let previous: StoredEvent | undefined;
    for (const e of history.filter((h) => h.lane === lane)) {
      if (previous && e.seq <= previous.seq) {
        findings.add('out_of_order', {
          userId,
          lane,
          eventIds: [previous.event!.id, e.event!.id],
          seqs: [previous.seq, e.seq],
          detail: `record history: ${previous.type} (seq ${previous.seq}) applied before ${e.type} (seq ${e.seq})${ctx.during(e.event!.at)}`,
        });
      }
      previous = e;
    }
  }
  // The events it lacks, where their lane's order puts them: after the last event of their lane stored before them.
  const inHistory = new Set(history.map((e) => e.event!.id));
  const merged: Array<{ e: StoredEvent; applied: boolean }> = history.map((e) => ({ e, applied: true }));
  for (const m of valid.filter((e) => !inHistory.has(e.event!.id)).sort((a, b) => a.seq - b.seq)) {
    let at = 0;
    merged.forEach((x, i) => {
      if (x.e.lane === m.lane && x.e.seq < m.seq) at = i + 1;
    });
    merged.splice(at, 0, { e: m, applied: false });
  }
  const first = history[0] ?? merged[0]?.e;
  let state = createUserState(userId, first?.event!.at ?? 0);
  let safety = EMPTY_SAFETY;
  const expected: Transition[] = [];
  for (const { e, applied } of merged) {
    const step = applyEvent(state, e.event!);
    if (!applied) {
      if (step.outcome === 'applied') ctx.loseEvent(e, 'not in the record\'s applied history');
      continue;
    }
    if (step.outcome !== 'applied') {
      findings.add('state_mismatch', { userId, eventIds: [e.event!.id], seqs: [e.seq], detail: `the record lists it as applied; the fold finds it ${step.outcome}` });
      continue;
    }
    const [before, after] = [state.snapshot, step.state.snapshot];
    if (!isDeepStrictEqual(before.value, after.value) || crisisLevel(before) !== crisisLevel(after)) {
      expected.push({ eventId: e.event!.id, from: regionsOf(before), to: regionsOf(after) });
    }
    state = step.state;
    safety = applySafetyEvent(safety, e.event!);
  }
  // Compared, never shown: it is personal content.
  if (!isDeepStrictEqual(safety, record.safety)) findings.add('state_mismatch', { userId, detail: 'the record\'s safety content is not what its history gives' });
  const folded = toPersisted(state);
  if (!isDeepStrictEqual(folded, record.state)) {
    const differs = (['value', 'context', 'billing', 'recentEventIds'] as const).filter((k) => !isDeepStrictEqual(folded[k], record.state[k]));
    const contextKeys = Object.keys(folded.context).filter((k) => !isDeepStrictEqual(folded.context[k as keyof typeof folded.context], record.state.context[k as keyof typeof folded.context]));
    findings.add('state_mismatch', {
      userId,
      detail: `the record is not the fold of its history: ${differs.join(', ')} differ${contextKeys.length ? ` (context: ${contextKeys.join(', ')})` : ''}; record ${showRegions(regionsOf(fromPersisted(record.state).snapshot))}, fold ${showRegions(regionsOf(state.snapshot))}`,
    });
  }
  return { expected, state };
}

/**
 * A user's audit records, in the audit stream's order: one per event id; per lane in the lane's
 * order (their `seq`); a chain (each `from` the previous `to`, from the new user's state); and, when
 * the fold is known, exactly its transitions.
 */
function checkAudit(u: UserData, expected: readonly Transition[] | undefined, findings: Findings): void {
  const { userId } = u;
  const count = new Map<string, number>();
  for (const a of u.audits) count.set(a.eventId, (count.get(a.eventId) ?? 0) + 1);
  for (const [id, n] of count) if (n > 1) findings.add('applied_twice', { userId, eventIds: [id], detail: `${n} audit records` });

  const lastSeq: Partial<Record<Lane, StoredAudit>> = {};
  let previousTo = regionsOf(createUserState(userId, 0).snapshot);
  let previous: StoredAudit | undefined;
  for (const a of u.audits) {
    if (a.lane === undefined || a.seq === undefined) {
      findings.runError('audit_without_lane_seq', `${userId}: audit record ${a.auditSeq} (${a.eventId}) has no lane/seq`);
    } else {
      const last = lastSeq[a.lane];
      if (last && a.seq <= last.seq!) {
        findings.add('out_of_order', {
          userId,
          lane: a.lane,
          eventIds: [last.eventId, a.eventId],
          seqs: [last.seq!, a.seq],
          detail: `audit: ${last.eventType} (seq ${last.seq}) recorded before ${a.eventType} (seq ${a.seq})`,
        });
      }
      lastSeq[a.lane] = a;
    }
    if (!sameRegions(a.from, previousTo)) {
      findings.add('wrong_transition', {
        userId,
        eventIds: previous ? [previous.eventId, a.eventId] : [a.eventId],
        seqs: previous ? [previous.auditSeq, a.auditSeq] : [a.auditSeq],
        detail: `audit ${a.auditSeq} ${a.eventType}: from ${showRegions(a.from)}, but the previous record left ${showRegions(previousTo)}`,
      });
    }
    previousTo = a.to;
    previous = a;
  }
  if (!expected) return;
  const want = new Map(expected.map((t) => [t.eventId, t]));
  for (const a of u.audits) {
    const t = want.get(a.eventId);
    if (!t) findings.add('wrong_transition', { userId, eventIds: [a.eventId], detail: `audit record for ${a.eventType}, which made no transition in the fold` });
    else if (!sameRegions(t.from, a.from) || !sameRegions(t.to, a.to))
      findings.add('wrong_transition', {
        userId,
        eventIds: [a.eventId],
        detail: `audit ${showRegions(a.from)} → ${showRegions(a.to)}, the fold ${showRegions(t.from)} → ${showRegions(t.to)}`,
      });
  }
  for (const t of expected) if (!count.has(t.eventId)) findings.add('wrong_transition', { userId, eventIds: [t.eventId], detail: `no audit record of the transition ${showRegions(t.from)} → ${showRegions(t.to)}` });
}

/** The view parts compared by name when a stored view does not show the record's state (names only: a view holds safety content). */
const VIEW_PARTS = ['devices', 'tier', 'status', 'trialEndsAt', 'gracePeriod', 'crisis', 'features', 'sync', 'safety'] as const;

/** The stored view against the record: its version, and what it shows. */
function checkView(u: UserData, record: UserRecord, folded: UserState | undefined, findings: Findings): void {
  const { userId } = u;
  const view = u.stored?.view ?? null;
  if (!view) {
    if (record.viewVersion > 0) findings.add('stale_view', { userId, detail: `no stored view; the record is at v${record.viewVersion}` });
    return;
  }
  if (view.version < record.viewVersion) {
    findings.add('stale_view', { userId, detail: `stored view v${view.version}, the record knows v${record.viewVersion}${record.outbox?.view ? ' (its outbox holds the view)' : ''}` });
    return;
  }
  if (view.version > record.viewVersion) {
    findings.add('view_mismatch', { userId, detail: `stored view v${view.version} is ahead of the record's v${record.viewVersion}` });
    return;
  }
  const snapshot = (folded ?? fromPersisted(record.state)).snapshot;
  const want = deviceViewOf(userId, snapshot.context.devices, record.viewVersion, deriveView(snapshot), record.safety, view.crisisLines, 0);
  if (!sameDeviceContent(view, want)) {
    const parts = VIEW_PARTS.filter((k) => !isDeepStrictEqual(view[k], want[k]));
    findings.add('view_mismatch', { userId, detail: `stored view v${view.version} does not show the record's state: ${parts.join(', ') || 'content'} differ` });
  }
}

/**
 * Every device still listed by the stored view applied it last (no provisional crisis left over it),
 * and never went back: each stored view newer than the one before, each provisional crisis over the
 * newest applied.
 */
function checkDevices(u: UserData, findings: Findings): void {
  const view = u.stored?.view ?? null;
  for (const d of u.devices) {
    let newest = 0;
    for (const a of d.applied) {
      if (a.provisional ? a.version < newest : a.version <= newest) {
        findings.add('device_diverged', { userId: u.userId, deviceId: d.deviceId, detail: `applied v${a.version}${a.provisional ? ' (provisional)' : ''} after v${newest}` });
        break;
      }
      newest = a.version;
    }
    if (!view || !view.devices.includes(d.deviceId)) continue;
    if (!showsStoredView(d, view.version)) {
      const last = d.applied.at(-1);
      findings.add('device_diverged', {
        userId: u.userId,
        deviceId: d.deviceId,
        detail: `last applied ${last ? `v${last.version}${last.provisional ? ' with a provisional crisis' : ''}` : 'nothing'}${d.removed ? ' (thinks it was removed)' : ''}, stored view v${view.version}`,
      });
    }
  }
}

/** Whether a device shows the stored view of `version` last: applied, with no provisional crisis over it. */
export function showsStoredView(d: DeviceLog, version: number): boolean {
  const last = d.applied.at(-1);
  return last?.version === version && !last.provisional;
}

/** The fault a moment falls in (its window and the tail after it), or "none". */
export function faultAt(at: number, faults: readonly FaultWindow[], tailMs: number): string {
  return faults.find((f) => at >= f.start && at <= f.end + tailMs)?.kind ?? 'none';
}

/** The nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * Each press against its user's devices: shown on a device by the first crisis view it applied at or
 * after the press (and before the user's next press), or at once when it showed a crisis already.
 * The press's latency is its slowest device's. It is put down to the fault active at the press (or
 * healed less than `tailMs` before), else to a fault that started while it waited to be shown.
 */
function checkCrises(input: CheckInput, findings: Findings, deadlineMs: number, tailMs: number): { crisis: Record<string, CrisisLatency>; slowest: PressOutcome[] } {
  const devicesOf = Map.groupBy(input.devices, (d) => d.userId);
  const shownLatencies = new Map<string, number[]>();
  const storedLatencies = new Map<string, number[]>();
  const outcomes: PressOutcome[] = [];
  const summary = new Map<string, CrisisLatency>();
  const entry = (kind: string) => {
    let s = summary.get(kind);
    if (!s) summary.set(kind, (s = { presses: 0, shown: 0, neverShown: 0, late: 0, p50Ms: null, p99Ms: null, maxMs: null, storedP50Ms: null, storedMaxMs: null, firstAfterFaultMs: null }));
    return s;
  };
  const push = (into: Map<string, number[]>, kind: string, ms: number) => into.set(kind, [...(into.get(kind) ?? []), ms]);
  for (const [userId, devices] of devicesOf) {
    const presses = devices.flatMap((d) => d.presses).sort((a, b) => a.at - b.at);
    presses.forEach((p, i) => {
      const next = presses[i + 1]?.at ?? Number.POSITIVE_INFINITY;
      const missing: string[] = [];
      let slowest = 0;
      for (const d of devices) {
        const before = d.applied.filter((a) => a.appliedAt < p.at).at(-1);
        if (before?.crisis) continue;
        const shown = d.applied.find((a) => a.crisis && a.appliedAt >= p.at && a.appliedAt < next);
        if (shown) slowest = Math.max(slowest, shown.appliedAt - p.at);
        else missing.push(d.deviceId);
      }
      const shownAt = missing.length ? undefined : p.at + slowest;
      let kind = faultAt(p.at, input.faults, tailMs);
      if (kind === 'none' && shownAt !== undefined) kind = input.faults.find((f) => f.start > p.at && f.start <= shownAt)?.kind ?? 'none';
      const s = entry(kind);
      s.presses++;
      const storedMs = p.storedAt === null ? null : p.storedAt - p.at;
      if (storedMs !== null) push(storedLatencies, kind, storedMs);
      outcomes.push({ userId, deviceId: p.deviceId, fault: kind, at: new Date(p.at).toISOString(), storedMs, shownMs: shownAt === undefined ? null : slowest });
      const where = `pressed on ${p.deviceId} at ${new Date(p.at).toISOString()} (fault: ${kind}), ${storedMs === null ? 'never acknowledged' : `stored after ${storedMs} ms`}`;
      if (missing.length) {
        s.neverShown++;
        findings.add('crisis_never_shown', {
          userId,
          deviceId: missing.join(','),
          seqs: p.seq === undefined ? undefined : [p.seq],
          detail: `${where}: never shown on ${missing.join(', ')}${p.storedAt === null ? ` (the device's last error: ${p.error ?? 'none'})` : ''}`,
        });
        return;
      }
      s.shown++;
      push(shownLatencies, kind, slowest);
      if (slowest > deadlineMs) {
        s.late++;
        findings.add('crisis_late', { userId, seqs: p.seq === undefined ? undefined : [p.seq], detail: `${where}: shown on every device after ${slowest} ms` });
      }
    });
  }
  for (const [kind, s] of summary) {
    const shown = [...(shownLatencies.get(kind) ?? [])].sort((a, b) => a - b);
    const stored = [...(storedLatencies.get(kind) ?? [])].sort((a, b) => a - b);
    Object.assign(s, { p50Ms: percentile(shown, 50), p99Ms: percentile(shown, 99), maxMs: shown.at(-1) ?? null, storedP50Ms: percentile(stored, 50), storedMaxMs: stored.at(-1) ?? null });
  }
  for (const f of input.faults) {
    const during = outcomes.map((o) => ({ o, at: Date.parse(o.at) })).filter(({ at }) => at >= f.start && at <= f.end + tailMs);
    const first = during.sort((a, b) => a.at - b.at)[0]?.o;
    const s = summary.get(f.kind);
    if (first?.shownMs != null && s) s.firstAfterFaultMs = Math.max(s.firstAfterFaultMs ?? 0, first.shownMs);
  }
  const crisis = Object.fromEntries([...summary].sort(([a], [b]) => (a === 'none' ? -1 : b === 'none' ? 1 : a.localeCompare(b))));
  const wait = (o: PressOutcome) => o.shownMs ?? Number.POSITIVE_INFINITY;
  const slowest = outcomes.sort((a, b) => (wait(a) === wait(b) ? 0 : wait(a) < wait(b) ? 1 : -1)).slice(0, 10);
  return { crisis, slowest };
}

/**
 * The nemesis run's report: the JSON file (seed, the schedule, the faults injected per kind with
 * their times, the load, every anomaly kind's count with examples, crisis latency per fault kind)
 * and the tables on stdout.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ANOMALY_KINDS, type CheckResult } from './checker.ts';
import type { FaultRecord } from './faults.ts';
import type { LoadStats } from './load.ts';
import { FAULT_KINDS, type FaultStep } from './schedule.ts';

/** Everything the JSON file holds. */
export interface NemesisReport {
  seed: number;
  minutes: number;
  /** How to run the same schedule again. */
  replay: string;
  startedAt: string;
  finishedAt: string;
  ok: boolean;
  config: Record<string, unknown>;
  schedule: FaultStep[];
  /** Steps of the schedule not run (they would not have healed before the load's end). */
  skipped: number[];
  faults: FaultRecord[];
  faultsByKind: Record<string, { count: number; times: Array<{ target: string; start: string; end: string | null; ms: number | null }> }>;
  load: LoadStats;
  anomalies: CheckResult['anomalies'];
  runErrors: CheckResult['runErrors'];
  notes: CheckResult['notes'];
  crisisLatency: CheckResult['crisis'];
  slowestPresses: CheckResult['slowestPresses'];
  totals: CheckResult['totals'];
  /** Where every process's log of the run is. */
  logs: string;
}

/** The faults per kind, with their times. */
export function faultsByKind(records: readonly FaultRecord[]): NemesisReport['faultsByKind'] {
  const out: NemesisReport['faultsByKind'] = {};
  for (const kind of FAULT_KINDS) out[kind] = { count: 0, times: [] };
  for (const r of records) {
    const entry = out[r.kind]!;
    entry.count++;
    entry.times.push({
      target: r.target,
      start: new Date(r.start).toISOString(),
      end: r.end === undefined ? null : new Date(r.end).toISOString(),
      ms: r.end === undefined ? null : r.end - r.start,
    });
  }
  return out;
}

/** Writes the report as JSON. */
export async function writeReport(file: string, report: NemesisReport): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
}

/** Lays out rows as columns (the first row is the header): numbers to the right, text to the left. */
export function table(rows: ReadonlyArray<ReadonlyArray<string | number | null>>): string {
  const cells = rows.map((r) => r.map((c) => (c === null ? '-' : String(c))));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]?.length ?? 0)));
  const numeric = cells[0]!.map((_, i) => rows.slice(1).every((r) => typeof r[i] === 'number' || r[i] === null));
  return cells.map((r) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

/** The report as text for stdout. */
export function formatReport(report: NemesisReport): string {
  const out: string[] = [];
  const { load, totals } = report;
  out.push(`nemesis: seed ${report.seed}, ${report.minutes} min of load: ${report.ok ? 'OK, no anomaly' : 'FAILED'}`);
  out.push(
    `load: ${load.published} events published (${load.failed} gave up), ${load.loadUsers} load users, ${load.cohorts} cohorts with ${load.devices} devices, ` +
      `${load.presses} crisis presses (${load.pressesUnacknowledged} never acknowledged to the device, ${load.pressesSkipped} skipped), ${load.resolves} resolved`,
  );
  out.push(
    `stored: ${totals.storedEvents.normal} normal + ${totals.storedEvents.crisis} crisis lane events of ${totals.users} users (${totals.usersFullyChecked} fully checked), ` +
      `${totals.auditRecords} audit records, dead letters ${JSON.stringify(totals.deadLetters)}${totals.storedTwice ? `, ${totals.storedTwice} stored twice` : ''}`,
  );
  out.push('');
  out.push(table([['fault', 'count', 'targets'], ...Object.entries(report.faultsByKind).map(([kind, f]) => [kind, f.count, f.times.map((t) => t.target).join(' ')])]));
  if (report.skipped.length) out.push(`(${report.skipped.length} scheduled faults not run: no time left to heal them)`);
  const errors = report.faults.filter((f) => f.error);
  for (const f of errors) out.push(`fault ${f.index} ${f.kind} ${f.target}: not healed: ${f.error}`);
  out.push('');
  const tolerated = new Set((report.config.tolerated as string[] | undefined) ?? []);
  const kind = (k: string) => (tolerated.has(k) ? `${k} (tolerated)` : k);
  out.push(table([['anomaly', 'count', 'example'], ...ANOMALY_KINDS.map((k) => [kind(k), report.anomalies[k].count, example(report.anomalies[k].examples[0])])]));
  for (const [kind, e] of Object.entries(report.runErrors)) out.push(`run error ${kind}: ${e.count}, e.g. ${e.examples[0] ?? ''}`);
  for (const [kind, e] of Object.entries(report.notes)) out.push(`note ${kind}: ${e.count}, e.g. ${e.examples[0] ?? ''}`);
  out.push('');
  out.push('crisis press → shown on every device of the user (ms), by the fault active at the press; the first press of each fault (its slowest); press → stored in the lane beside it');
  out.push(
    table([
      ['fault', 'presses', 'p50', 'p99', 'max', 'never shown', 'late', 'first in fault', 'stored p50', 'stored max'],
      ...Object.entries(report.crisisLatency).map(([kind, c]) => [kind, c.presses, c.p50Ms, c.p99Ms, c.maxMs, c.neverShown, c.late, c.firstAfterFaultMs, c.storedP50Ms, c.storedMaxMs]),
    ]),
  );
  out.push('');
  out.push(`report: ${report.config.out as string}; logs: ${report.logs}`);
  out.push(`replay: ${report.replay}`);
  return out.join('\n');
}

function example(a: CheckResult['anomalies'][keyof CheckResult['anomalies']]['examples'][number] | undefined): string {
  if (!a) return '';
  const where = [a.userId, a.deviceId, a.lane].filter(Boolean).join(' ');
  const ids = a.eventIds?.length ? ` [${a.eventIds.join(', ')}]` : '';
  const seqs = a.seqs?.length ? ` seq ${a.seqs.join(', ')}` : '';
  const text = `${where}${ids}${seqs}: ${a.detail}`;
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}

/**
 * CPU time of the bench's processes from /proc (Linux): per process, for the whole machine, and per
 * event over a closed loop's measured window. Used by `bench/run.ts` and `bench/cluster.ts`.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** How often a window's end is looked for. */
const WINDOW_POLL_MS = 20;

let clockTicks: number | undefined;

/** CPU time counted in clock ticks (as /proc counts it), in ms. */
function ticksToMs(ticks: number): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
  return (ticks * 1000) / clockTicks;
}

/** CPU time (user + system) a process has used, in ms; 0 once it is gone. */
export function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const [utime, stime] = stat.slice(stat.lastIndexOf(')') + 2).split(' ').slice(11, 13).map(Number);
    return ticksToMs(utime! + stime!);
  } catch {
    return 0;
  }
}

/** The whole machine's CPU time so far, busy and in total, in ms (all cores). */
export function machineMs(): { busy: number; total: number } {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  // user nice system idle iowait irq softirq steal (guest time is already counted in user).
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields.map(Number) as number[];
  const total = user! + nice! + system! + idle! + iowait! + irq! + softirq! + steal!;
  return { busy: ticksToMs(total - idle! - iowait!), total: ticksToMs(total) };
}

/** Named groups of processes (e.g. `devices`: two device processes). */
export type ProcessGroups = Record<string, ReadonlyArray<number | undefined>>;

/** CPU time each group spent over a window, and the window's wall time, in ms. */
export interface WindowCpu {
  wallMs: number;
  cpuMs: Record<string, number>;
}

const groupMs = (groups: ProcessGroups): Record<string, number> =>
  Object.fromEntries(Object.entries(groups).map(([name, pids]) => [name, pids.reduce<number>((sum, pid) => sum + cpuMs(pid), 0)]));

/** The CPU time of `groups` from now until `inWindow()` turns false (a closed loop's `during`). */
export async function cpuOverWindow(groups: ProcessGroups, inWindow: () => boolean): Promise<WindowCpu> {
  const from = groupMs(groups);
  const started = performance.now();
  while (inWindow()) await sleep(WINDOW_POLL_MS);
  const to = groupMs(groups);
  return { wallMs: performance.now() - started, cpuMs: Object.fromEntries(Object.entries(to).map(([name, ms]) => [name, ms - from[name]!])) };
}

/** Each group's CPU µs per event, at `eps` events per second over the window. */
export function cpuPerEvent(window: WindowCpu, eps: number): Record<string, number> {
  const events = (eps * window.wallMs) / 1000;
  return Object.fromEntries(Object.entries(window.cpuMs).map(([name, ms]) => [name, Math.round((ms * 1000) / events)]));
}

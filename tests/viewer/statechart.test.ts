/**
 * The statechart drawing (pure): every state and every transition of the machine is drawn, from the
 * machine's own definition, so a state added to the machine appears with no other change; the
 * layout is sound (states inside their parents, no overlaps, arrows from border to border);
 * `npm run viz` writes the same drawing to a file.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMachine } from 'xstate';
import { describe, expect, it } from 'vitest';
import { userMachine } from '../../machines/userMachine.ts';
import {
  activeStateIds,
  drawStatechart,
  layoutStatechart,
  statechartGraph,
  transitionText,
  type StatechartLayout,
} from '../../viewer/statechart.ts';
import { allTransitions, atomicStateNodes } from '../support/userModel.ts';
import { machineWithPausedState } from './machines.ts';

const attr = (svg: string, name: string) => [...svg.matchAll(new RegExp(`${name}="([^"]*)"`, 'g'))].map((m) => m[1]!);

function checkLayout(layout: StatechartLayout): void {
  const byId = new Map(layout.states.map((s) => [s.id, s]));
  const inside = (a: { x: number; y: number; width: number; height: number }, b: typeof a) =>
    a.x >= b.x && a.y >= b.y && a.x + a.width <= b.x + b.width && a.y + a.height <= b.y + b.height;
  for (const s of layout.states) {
    expect(s.width).toBeGreaterThan(0);
    if (s.parent) expect(inside(s, byId.get(s.parent)!), `${s.id} inside ${s.parent}`).toBe(true);
    for (const t of layout.states) {
      if (s === t || s.parent !== t.parent) continue;
      const apart = s.x + s.width <= t.x || t.x + t.width <= s.x || s.y + s.height <= t.y || t.y + t.height <= s.y;
      expect(apart, `${s.id} and ${t.id} do not overlap`).toBe(true);
    }
  }
  const onBorder = (p: { x: number; y: number }, b: { x: number; y: number; width: number; height: number }) => {
    const within = p.x >= b.x - 1 && p.x <= b.x + b.width + 1 && p.y >= b.y - 1 && p.y <= b.y + b.height + 1;
    const edge = Math.min(Math.abs(p.x - b.x), Math.abs(p.x - b.x - b.width), Math.abs(p.y - b.y), Math.abs(p.y - b.y - b.height));
    return within && edge <= 1;
  };
  for (const e of layout.edges) {
    expect(e.points.length, e.id).toBeGreaterThanOrEqual(2);
    if (!e.initial) expect(onBorder(e.points[0]!, byId.get(e.source)!), `${e.id} starts on ${e.source}`).toBe(true);
    expect(onBorder(e.points.at(-1)!, byId.get(e.target)!), `${e.id} ends on ${e.target}`).toBe(true);
  }
}

describe('statechart drawing', () => {
  it('reads every state node and transition definition of the user machine', () => {
    const graph = statechartGraph(userMachine);
    const atomic = graph.states.filter((s) => s.type === 'atomic').map((s) => s.id);
    expect(new Set(atomic)).toEqual(atomicStateNodes());
    expect(new Set(graph.transitions.map((t) => t.key))).toEqual(allTransitions());
    expect(graph.states.find((s) => s.id === 'user')).toMatchObject({ type: 'parallel', children: ['user.subscription', 'user.crisis'] });
    expect(graph.states.find((s) => s.id === 'user.subscription')!.initial).toBe('user.subscription.trial');
    expect(graph.states.find((s) => s.id === 'user.crisis')!.initial).toBe('user.crisis.stable');
    // Guards by name; targetless transitions keep their actions.
    expect(graph.transitions.find((t) => t.key === 'user.subscription.grace_period|billing_changed|0')).toMatchObject({
      targets: ['user.subscription.premium'],
      guard: 'paysPremium',
    });
    const raise = graph.transitions.find((t) => t.key === 'user.crisis.active|assessment_completed|0')!;
    expect(raise).toMatchObject({ targets: [], guard: 'signalsCrisis', actions: ['raiseCrisis'] });
    expect(transitionText(raise)).toBe('assessment_completed [signalsCrisis] / raiseCrisis');
  });

  it('draws every state, every transition with its event and named guard, as SVG', async () => {
    const graph = statechartGraph(userMachine);
    const svg = await drawStatechart(userMachine, { embedStyle: true });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(new Set(attr(svg, 'data-state-id'))).toEqual(new Set(graph.states.map((s) => s.id)));
    expect(attr(svg, 'data-transition').sort()).toEqual(graph.transitions.map((t) => t.key).sort());
    for (const t of graph.transitions) {
      const line = new RegExp(`<text[^>]*data-transition="${t.key.replace(/[|.]/g, '\\$&')}"[^>]*>([^\\n]*)</text>`).exec(svg);
      expect(line, t.key).not.toBeNull();
      const text = line![1]!.replace(/<[^>]+>/g, '');
      expect(text).toContain(t.event);
      if (t.guard) expect(text).toContain(`[${t.guard}]`);
    }
    // Every arrow joins the states its transitions join; self transitions are listed in the state.
    const arrows = [...svg.matchAll(/<g class="edge" data-source="([^"]+)" data-target="([^"]+)">/g)].map((m) => `${m[1]}->${m[2]}`);
    const expected = new Set(graph.transitions.flatMap((t) => t.targets.filter((x) => x !== t.source).map((x) => `${t.source}->${x}`)));
    expect(new Set(arrows)).toEqual(expected);
    expect(svg).toContain('<style>');
    expect(await drawStatechart(userMachine)).not.toContain('<style>');
  });

  it('lays the statechart out soundly', async () => {
    checkLayout(await layoutStatechart(statechartGraph(userMachine)));
  });

  it('a state added to the machine is drawn with no other change', async () => {
    const modified = machineWithPausedState();
    const before = await drawStatechart(userMachine);
    const svg = await drawStatechart(modified);
    expect(before).not.toContain('user.subscription.paused');
    expect(attr(svg, 'data-state-id')).toContain('user.subscription.paused');
    expect(attr(svg, 'data-transition')).toEqual(expect.arrayContaining(['user.subscription.premium|subscription_paused|0', 'user.subscription.paused|subscription_resumed|0']));
    expect(svg).toContain('subscription_paused <tspan class="guard">[pausable]</tspan>');
    expect(svg).toContain('data-source="user.subscription.paused" data-target="user.subscription.premium"');
    checkLayout(await layoutStatechart(statechartGraph(modified)));
  });

  it('draws transitions across regions and nested states (the whole hierarchy laid out at once)', async () => {
    const machine = createMachine({
      id: 'm',
      type: 'parallel',
      states: {
        a: { initial: 'x', states: { x: { on: { GO: 'y', JUMP: '#m.b.q' } }, y: { on: { STAY: { actions: 'note' } } } } },
        b: {
          initial: 'p',
          states: {
            p: { on: { IN: { target: 'q', guard: 'ok' } } },
            q: { initial: 'q1', states: { q1: { on: { N: 'q2' } }, q2: { on: { OUT: '#m.b.p' } } } },
          },
        },
      },
    });
    const layout = await layoutStatechart(statechartGraph(machine));
    checkLayout(layout);
    expect(layout.edges.map((e) => `${e.source}->${e.target}`)).toEqual(expect.arrayContaining(['m.a.x->m.b.q', 'm.b.q.q2->m.b.p', 'm.b.p->m.b.q']));
    expect(layout.states.find((s) => s.id === 'm.a.y')!.internal.map(transitionText)).toEqual(['STAY / note']);
  });

  it('active state ids of a state value, ancestors included', () => {
    const graph = statechartGraph(userMachine);
    expect(activeStateIds(graph, { subscription: 'grace_period', crisis: 'active' })).toEqual([
      'user',
      'user.subscription',
      'user.subscription.grace_period',
      'user.crisis',
      'user.crisis.active',
    ]);
    expect(activeStateIds(graph, { subscription: 'nonsense', crisis: 'stable' })).toEqual(['user', 'user.subscription', 'user.crisis', 'user.crisis.stable']);
  });

  it('`npm run viz -- --out <file>` writes the standalone SVG', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'fm-viz-')), 'statechart.svg');
    execFileSync(process.execPath, ['scripts/viz.ts', '--out', out], { stdio: 'pipe' });
    const svg = readFileSync(out, 'utf8');
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"[^>]* viewBox="0 0 \d+ \d+"/);
    expect(svg).toContain('<style>');
    for (const id of atomicStateNodes()) expect(svg).toContain(`data-state-id="${id}"`);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  });
});

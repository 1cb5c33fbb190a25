/**
 * The statechart drawing, from the machine's own definition: walk the machine's state nodes and
 * transitions into a graph, lay it out with ELK (layered, compound nodes), render it as SVG.
 * Pure (no I/O): `npm run viz` writes the result to a file, the clinician viewer serves it.
 *
 * Every state node is a `<g data-state-id="…">` (the XState id, e.g. `user.subscription.trial`),
 * so the page can mark a user's current states; every transition definition is a text line with
 * `data-transition="<source id>|<event>|<index>"` (its place in the source's transition list).
 * Transitions between two states are one arrow whose label lists each of them (`event [guard]`);
 * targetless transitions (they run actions without leaving the state) are listed inside their state.
 */
// elkjs is CommonJS: under Node's ESM its module object is the default import, and it also
// exports itself as `.default`, which is what TypeScript (nodenext) types the constructor as.
import elkjs from 'elkjs/lib/elk.bundled.js';
import type { ElkExtendedEdge, ElkNode, ElkPoint } from 'elkjs/lib/elk-api.js';
import type { AnyStateMachine, AnyStateNode } from 'xstate';

/** One state node of the machine. */
export interface ChartState {
  /** XState id, e.g. `user.subscription.trial`. */
  id: string;
  key: string;
  /** Keys from the root, e.g. `['subscription', 'trial']` (empty for the root). */
  path: string[];
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  parent: string | null;
  /** Ids of the child states, in definition order. */
  children: string[];
  /** Id of the initial child of a compound state. */
  initial: string | null;
}

/** One transition definition of the machine. */
export interface ChartTransition {
  /** `<source id>|<event>|<index in the source's list for that event>`. */
  key: string;
  source: string;
  /** Event type; `always` for eventless transitions. */
  event: string;
  /** Target state ids; empty for a targetless transition. */
  targets: string[];
  /** Guard name, when the transition has a guard. */
  guard: string | null;
  actions: string[];
}

/** A machine's states and transitions. */
export interface ChartGraph {
  machineId: string;
  states: ChartState[];
  transitions: ChartTransition[];
}

/** Reads the states and transitions of a machine from its definition. */
export function statechartGraph(machine: AnyStateMachine): ChartGraph {
  const states: ChartState[] = [];
  const transitions: ChartTransition[] = [];
  const visit = (node: AnyStateNode, parent: string | null) => {
    const children = Object.values(node.states) as AnyStateNode[];
    const initialTarget = node.type === 'compound' ? (node.initial?.target?.[0] as AnyStateNode | undefined) : undefined;
    states.push({
      id: node.id,
      key: node.key,
      path: [...node.path],
      type: node.type,
      parent,
      children: children.map((c) => c.id),
      initial: initialTarget?.id ?? null,
    });
    const lists: Array<[string, readonly TransitionLike[]]> = [...(node.transitions as Map<string, TransitionLike[]>)];
    if (node.always?.length) lists.push(['always', node.always as TransitionLike[]]);
    for (const [event, list] of lists) {
      list.forEach((t, index) => {
        transitions.push({
          key: `${node.id}|${event}|${index}`,
          source: node.id,
          event,
          targets: (t.target ?? []).map((s) => s.id),
          guard: nameOf(t.guard),
          actions: (t.actions ?? []).map((a) => nameOf(a) ?? 'action'),
        });
      });
    }
    for (const child of children) visit(child, node.id);
  };
  visit(machine.root, null);
  return { machineId: machine.root.id, states, transitions };
}

interface TransitionLike {
  target?: ReadonlyArray<{ id: string }>;
  guard?: unknown;
  actions?: readonly unknown[];
}

/** The name of a named guard or action (`'choosesPremium'`, `{ type: 'x' }`); inline functions by their name. */
function nameOf(g: unknown): string | null {
  if (g === undefined || g === null) return null;
  if (typeof g === 'string') return g;
  if (typeof g === 'function') return g.name || 'inline';
  if (typeof g === 'object' && typeof (g as { type?: unknown }).type === 'string') return (g as { type: string }).type;
  return 'inline';
}

/**
 * The ids of the states a state value is in (ancestors included), e.g. for
 * `{ subscription: 'basic', crisis: 'active' }`: `user`, `user.subscription`, `user.subscription.basic`, …
 */
export function activeStateIds(graph: ChartGraph, value: unknown): string[] {
  const within = (path: readonly string[]): boolean => {
    let v: unknown = value;
    for (let i = 0; i < path.length; i++) {
      const key = path[i]!;
      if (typeof v === 'string') return v === key && i === path.length - 1;
      if (!v || typeof v !== 'object' || !(key in v)) return false;
      v = (v as Record<string, unknown>)[key];
    }
    return true;
  };
  return graph.states.filter((s) => within(s.path)).map((s) => s.id);
}

// ---------------------------------------------------------------------------------------------
// Layout

/** Text metrics: a monospace font, so widths are known without a browser (0.6 em per character). */
const FONT = 12;
const CHAR = FONT * 0.6;
const LINE = 16;
const TITLE_FONT = 14;
const TITLE_CHAR = TITLE_FONT * 0.6;
const PAD = 10;
const BADGE_W = 64;
const INITIAL_SIZE = 12;

const textWidth = (s: string, char = CHAR) => Math.ceil(s.length * char);

/** The text of a transition inside a label: `event [guard]`; targetless ones add `/ actions`. */
export function transitionText(t: ChartTransition): string {
  const guard = t.guard ? ` [${t.guard}]` : '';
  const actions = t.targets.length === 0 && t.actions.length ? ` / ${t.actions.join(', ')}` : '';
  return `${t.event}${guard}${actions}`;
}

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** A state, placed. */
export interface PlacedState extends ChartState, Box {
  /** Targetless transitions of the state (listed inside it). */
  internal: ChartTransition[];
}

/** An arrow, placed: every transition from `source` to `target`. */
export interface PlacedEdge {
  id: string;
  source: string;
  target: string;
  transitions: ChartTransition[];
  points: ElkPoint[];
  label: Box;
  /** Whether the arrow starts at an initial-state marker rather than a state. */
  initial: boolean;
}

/** A laid-out statechart. */
export interface StatechartLayout {
  graph: ChartGraph;
  width: number;
  height: number;
  states: PlacedState[];
  /** Initial-state markers (small discs), by the id of the compound state they belong to. */
  initials: Array<{ parent: string; target: string; x: number; y: number; size: number }>;
  edges: PlacedEdge[];
}

const INITIAL_SUFFIX = '#initial';

/** ELK options of every compound state. */
const LAYOUT_OPTIONS: Readonly<Record<string, string>> = {
  'elk.algorithm': 'layered',
  'elk.direction': 'DOWN',
  'elk.edgeRouting': 'ORTHOGONAL',
  'elk.layered.spacing.nodeNodeBetweenLayers': '56',
  'elk.spacing.nodeNode': '40',
  'elk.spacing.edgeNode': '16',
  'elk.spacing.edgeEdge': '12',
  'elk.spacing.edgeLabel': '4',
  'elk.spacing.componentComponent': '48',
  'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
  'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES',
  // States are layered in definition order (trial, basic, premium, …): arrows against it go back up.
  'elk.layered.cycleBreaking.strategy': 'MODEL_ORDER',
  'elk.layered.considerModelOrder.components': 'MODEL_ORDER',
};

/** A graph's transitions as they are drawn, and its states by id. */
interface Drawing {
  byId: Map<string, ChartState>;
  /** Per state, its targetless (and self) transitions: listed inside it. */
  internal: Map<string, ChartTransition[]>;
  /** Per `source->target`, the transitions drawn as that one arrow. */
  arrows: Map<string, Arrow>;
}

interface Arrow {
  source: string;
  target: string;
  transitions: ChartTransition[];
}

/** Lays a statechart out with ELK (layered, top to bottom, compound states as nested boxes). */
export async function layoutStatechart(graph: ChartGraph): Promise<StatechartLayout> {
  const drawing = drawingOf(graph);
  const root = graph.states.find((s) => s.parent === null)!;
  const elkRoot = elkNode(drawing, root);
  if (crossesHierarchy(drawing)) layOutWholeHierarchy(elkRoot);
  const edgeContainers = addElkEdges(graph, drawing, elkRoot);
  const laid = await new elkjs.default().layout(elkRoot);
  return placeLayout(graph, drawing, laid, edgeContainers);
}

function drawingOf(graph: ChartGraph): Drawing {
  const internal = new Map<string, ChartTransition[]>();
  const arrows = new Map<string, Arrow>();
  for (const t of graph.transitions) {
    const external = t.targets.filter((target) => target !== t.source);
    if (external.length === 0) internal.set(t.source, [...(internal.get(t.source) ?? []), t]);
    for (const target of external) {
      const key = `${t.source}->${target}`;
      const arrow = arrows.get(key) ?? { source: t.source, target, transitions: [] };
      arrow.transitions.push(t);
      arrows.set(key, arrow);
    }
  }
  return { byId: new Map(graph.states.map((s) => [s.id, s])), internal, arrows };
}

/** A state's title: its key, and whether it is parallel. */
function stateTitle(s: ChartState): string {
  return s.type === 'parallel' ? `${s.key} (parallel)` : s.key;
}

/** A state as an ELK node sized to its text; a compound state with its children and initial marker. */
function elkNode(d: Drawing, s: ChartState): ElkNode {
  const internal = d.internal.get(s.id) ?? [];
  const header = 22 + internal.length * LINE;
  const inner = Math.max(textWidth(stateTitle(s), TITLE_CHAR) + BADGE_W, ...internal.map((t) => textWidth(`↺ ${transitionText(t)}`)));
  if (s.children.length === 0) return { id: s.id, width: inner + 2 * PAD, height: header + 2 * PAD };
  const children = s.children.map((c) => elkNode(d, d.byId.get(c)!));
  if (s.initial) children.unshift({ id: s.id + INITIAL_SUFFIX, width: INITIAL_SIZE, height: INITIAL_SIZE });
  return {
    id: s.id,
    layoutOptions: {
      ...LAYOUT_OPTIONS,
      'elk.padding': `[top=${header + PAD + 8},left=${PAD + 6},bottom=${PAD + 6},right=${PAD + 6}]`,
      'elk.nodeSize.constraints': 'MINIMUM_SIZE',
      'elk.nodeSize.minimum': `(${inner + 2 * PAD},${header + 2 * PAD})`,
    },
    children,
    edges: [],
  };
}

/** Whether an arrow joins states of different parents (e.g. into another region). */
function crossesHierarchy(d: Drawing): boolean {
  return [...d.arrows.values()].some((a) => d.byId.get(a.target)!.parent !== d.byId.get(a.source)!.parent);
}

/**
 * Makes ELK lay out the whole hierarchy at once, which an arrow crossing it needs; ELK's
 * model-order cycle breaking does not support that mode.
 */
function layOutWholeHierarchy(elkRoot: ElkNode): void {
  walk(elkRoot, (node) => {
    if (!node.children?.length) return;
    const { 'elk.layered.cycleBreaking.strategy': _cycle, 'elk.layered.considerModelOrder.components': _components, ...rest } = node.layoutOptions ?? {};
    node.layoutOptions = rest;
  });
  elkRoot.layoutOptions = { ...elkRoot.layoutOptions, 'elk.hierarchyHandling': 'INCLUDE_CHILDREN' };
}

/**
 * Adds every arrow, and the arrow of every initial marker, to the lowest state containing both
 * ends (ELK's rule for compound graphs); returns each edge's container.
 */
function addElkEdges(graph: ChartGraph, d: Drawing, elkRoot: ElkNode): Map<string, string> {
  const elkById = new Map<string, ElkNode>();
  walk(elkRoot, (n) => elkById.set(n.id, n));
  const containers = new Map<string, string>();
  const add = (container: string, edge: ElkExtendedEdge) => {
    (elkById.get(container)!.edges ??= []).push(edge);
    containers.set(edge.id, container);
  };
  for (const s of graph.states) {
    if (s.initial) add(s.id, { id: `${s.id}${INITIAL_SUFFIX}->${s.initial}`, sources: [s.id + INITIAL_SUFFIX], targets: [s.initial] });
  }
  for (const [key, { source, target, transitions }] of d.arrows) {
    const lines = transitions.map(transitionText);
    add(lowestCommonAncestor(d, source, target) ?? elkRoot.id, {
      id: key,
      sources: [source],
      targets: [target],
      labels: [{ id: `${key}:label`, text: lines.join('\n'), width: Math.max(...lines.map((l) => textWidth(l))) + 8, height: lines.length * LINE + 4 }],
    });
  }
  return containers;
}

/** The lowest state that contains both `a` and `b` (neither of them). */
function lowestCommonAncestor(d: Drawing, a: string, b: string): string | undefined {
  const ancestors = (id: string): string[] => {
    const out: string[] = [];
    for (let s = d.byId.get(id); s; s = s.parent ? d.byId.get(s.parent) : undefined) out.push(s.id);
    return out;
  };
  const up = ancestors(b);
  return ancestors(a).find((id) => up.includes(id) && id !== a && id !== b);
}

/** ELK's result in absolute coordinates (ELK places nodes relative to their parent, edges to their container). */
function placeLayout(graph: ChartGraph, d: Drawing, laid: ElkNode, edgeContainers: Map<string, string>): StatechartLayout {
  const absolute = new Map<string, { x: number; y: number }>();
  const nodes = new Map<string, ElkNode>();
  const edges: ElkExtendedEdge[] = [];
  const place = (n: ElkNode, ox: number, oy: number) => {
    const at = { x: ox + (n.x ?? 0), y: oy + (n.y ?? 0) };
    absolute.set(n.id, at);
    nodes.set(n.id, n);
    edges.push(...(n.edges ?? []));
    n.children?.forEach((c) => place(c, at.x, at.y));
  };
  place(laid, 0, 0);
  const states: PlacedState[] = graph.states.map((s) => {
    const n = nodes.get(s.id)!;
    const at = absolute.get(s.id)!;
    return { ...s, x: at.x, y: at.y, width: n.width ?? 0, height: n.height ?? 0, internal: d.internal.get(s.id) ?? [] };
  });
  const initials = graph.states
    .filter((s) => s.initial)
    .map((s) => {
      const at = absolute.get(s.id + INITIAL_SUFFIX)!;
      return { parent: s.id, target: s.initial!, x: at.x, y: at.y, size: INITIAL_SIZE };
    });
  const placedEdges = edges.map((e) => placeEdge(e, d, absolute.get(edgeContainers.get(e.id)!)!));
  return { graph, width: Math.ceil(laid.width ?? 0), height: Math.ceil(laid.height ?? 0), states, initials, edges: placedEdges };
}

/** One laid-out ELK edge, shifted by its container's position. */
function placeEdge(e: ElkExtendedEdge, d: Drawing, offset: { x: number; y: number }): PlacedEdge {
  const shift = (p: ElkPoint) => ({ x: p.x + offset.x, y: p.y + offset.y });
  const section = e.sections?.[0];
  const label = e.labels?.[0];
  const initial = e.id.includes(INITIAL_SUFFIX);
  const source = e.sources[0]!;
  return {
    id: e.id,
    source: initial ? source.slice(0, -INITIAL_SUFFIX.length) : source,
    target: e.targets[0]!,
    transitions: initial ? [] : d.arrows.get(e.id)!.transitions,
    points: section ? [section.startPoint, ...(section.bendPoints ?? []), section.endPoint].map(shift) : [],
    label: label
      ? { x: (label.x ?? 0) + offset.x, y: (label.y ?? 0) + offset.y, width: label.width ?? 0, height: label.height ?? 0 }
      : { x: 0, y: 0, width: 0, height: 0 },
    initial,
  };
}

/** Visits an ELK node and its descendants, parents first. */
function walk(node: ElkNode, visit: (node: ElkNode) => void): void {
  visit(node);
  node.children?.forEach((c) => walk(c, visit));
}

// ---------------------------------------------------------------------------------------------
// SVG

/** The drawing's stylesheet: embedded in a standalone SVG, served as a file to the viewer page. */
export const STATECHART_CSS = `
.statechart { font-family: "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; font-size: ${FONT}px; }
.statechart .state > rect { fill: #ffffff; stroke: #3d4852; stroke-width: 1.5; }
.statechart .state.compound > rect { fill: #f6f8fa; stroke-dasharray: 6 4; }
.statechart .state.parallel > rect { fill: #eef2f6; }
.statechart .state-title { font-size: ${TITLE_FONT}px; font-weight: 700; fill: #1b1f24; }
.statechart .internal { fill: #39424c; }
.statechart .edge path { fill: none; stroke: #4a5561; stroke-width: 1.4; }
.statechart .edge-label rect { fill: #ffffff; fill-opacity: 0.92; }
.statechart .edge-label text { fill: #1b1f24; }
.statechart .guard { fill: #6a3d9a; }
.statechart .initial-marker { fill: #1b1f24; }
.statechart .arrowhead { fill: #4a5561; }
.statechart .badge { display: none; }
.statechart .state.current > rect { fill: #fff4c2; stroke: #9a5b00; stroke-width: 3.5; stroke-dasharray: none; }
.statechart .state.current.crisis-active > rect { fill: #ffe1e1; stroke: #b3261e; }
.statechart .state.current > .badge { display: inline; }
.statechart .badge rect { fill: #9a5b00; }
.statechart .state.current.crisis-active > .badge rect { fill: #b3261e; }
.statechart .badge text { fill: #ffffff; font-weight: 700; font-size: 11px; }
`.trim();

const esc = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const n = (v: number) => String(Math.round(v * 10) / 10);

/** Options of {@link renderStatechartSvg}. */
export interface SvgOptions {
  /** Embed the stylesheet (a standalone file); the viewer page links {@link STATECHART_CSS} instead. */
  embedStyle?: boolean;
}

/** Renders a laid-out statechart as an SVG document. */
export function renderStatechartSvg(layout: StatechartLayout, options: SvgOptions = {}): string {
  const margin = 8;
  const w = layout.width + 2 * margin;
  const h = layout.height + 2 * margin;
  const machineId = esc(layout.graph.machineId);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="statechart" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-labelledby="statechart-title statechart-desc" data-machine-id="${machineId}">`,
    `<title id="statechart-title">Statechart of the ${machineId} machine</title>`,
    `<desc id="statechart-desc">${esc(describe(layout))}</desc>`,
  ];
  if (options.embedStyle) out.push(`<style>${STATECHART_CSS}</style>`);
  out.push(
    '<defs><marker id="statechart-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">',
    '<path class="arrowhead" d="M0,0 L10,5 L0,10 z"/></marker></defs>',
    `<g transform="translate(${margin},${margin})">`,
  );
  // Outer states first, so inner ones are drawn on top.
  for (const s of [...layout.states].sort((a, b) => a.path.length - b.path.length)) out.push(...stateSvg(s));
  for (const i of layout.initials) {
    const r = i.size / 2;
    out.push(`<circle class="initial-marker" cx="${n(i.x + r)}" cy="${n(i.y + r)}" r="${n(r - 1)}"><title>initial state of ${esc(i.parent)}</title></circle>`);
  }
  for (const e of layout.edges) out.push(...edgeSvg(e));
  out.push('</g></svg>');
  return out.join('\n') + '\n';
}

/** The drawing's text alternative: the regions of a parallel root, or the counts. */
function describe(layout: StatechartLayout): string {
  const { graph } = layout;
  const root = layout.states.find((s) => s.parent === null)!;
  if (root.type !== 'parallel') return `State machine ${root.key}: ${graph.states.length} states, ${graph.transitions.length} transitions.`;
  const regions = root.children
    .map((c) => layout.states.find((x) => x.id === c)!)
    .map((c) => `${c.key} (${c.children.map((k) => k.split('.').pop()).join(', ')})`);
  return `Parallel state ${root.key} with regions ${regions.join('; ')}. ${graph.transitions.length} transitions.`;
}

/** A state's group: box, title, targetless transitions and the (hidden) `current` badge. */
function stateSvg(s: PlacedState): string[] {
  const classes = ['state', s.type, s.id.endsWith('.active') && s.path[0] === 'crisis' ? 'crisis-active' : ''].filter(Boolean).join(' ');
  return [
    `<g class="${classes}" id="state-${esc(s.id)}" data-state-id="${esc(s.id)}" data-state-type="${s.type}">`,
    `<title>${esc(`state ${s.id}`)}</title>`,
    `<rect x="${n(s.x)}" y="${n(s.y)}" width="${n(s.width)}" height="${n(s.height)}" rx="${s.children.length ? 4 : 10}"/>`,
    `<text class="state-title" x="${n(s.x + PAD)}" y="${n(s.y + PAD + TITLE_FONT)}">${esc(stateTitle(s))}</text>`,
    ...s.internal.map(
      (t, i) =>
        `<text class="internal" x="${n(s.x + PAD)}" y="${n(s.y + PAD + TITLE_FONT + (i + 1) * LINE + 2)}" data-transition="${esc(t.key)}">${transitionLine(t, true)}</text>`,
    ),
    `<g class="badge" aria-hidden="true"><rect x="${n(s.x + s.width - BADGE_W - 4)}" y="${n(s.y + 5)}" width="${BADGE_W}" height="18" rx="9"/>`,
    `<text x="${n(s.x + s.width - BADGE_W / 2 - 4)}" y="${n(s.y + 18)}" text-anchor="middle">current</text></g>`,
    '</g>',
  ];
}

/** An arrow's group: its path and the label listing its transitions. */
function edgeSvg(e: PlacedEdge): string[] {
  const d = e.points.map((p, k) => `${k === 0 ? 'M' : 'L'}${n(p.x)},${n(p.y)}`).join(' ');
  const out = [
    `<g class="edge${e.initial ? ' initial' : ''}" data-source="${esc(e.source)}" data-target="${esc(e.target)}">`,
    `<path d="${d}" marker-end="url(#statechart-arrow)"/>`,
  ];
  if (e.transitions.length) {
    const { x, y, width, height } = e.label;
    out.push(
      `<g class="edge-label"><rect x="${n(x)}" y="${n(y)}" width="${n(width)}" height="${n(height)}" rx="3"/>`,
      ...e.transitions.map((t, k) => `<text x="${n(x + 4)}" y="${n(y + 2 + (k + 1) * LINE - 4)}" data-transition="${esc(t.key)}">${transitionLine(t, false)}</text>`),
      '</g>',
    );
  }
  out.push('</g>');
  return out;
}

function transitionLine(t: ChartTransition, internal: boolean): string {
  const guard = t.guard ? ` <tspan class="guard">[${esc(t.guard)}]</tspan>` : '';
  const actions = t.targets.length === 0 && t.actions.length ? ` / ${esc(t.actions.join(', '))}` : '';
  return `${internal ? '↺ ' : ''}${esc(t.event)}${guard}${actions}`;
}

/** The whole pipeline: a machine's definition → graph → layout → SVG. */
export async function drawStatechart(machine: AnyStateMachine, options: SvgOptions = {}): Promise<string> {
  return renderStatechartSvg(await layoutStatechart(statechartGraph(machine)), options);
}

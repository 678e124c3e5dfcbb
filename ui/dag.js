// The workflow graph: a plan's steps and their dependencies, laid out in
// layers (a simple Sugiyama layout) and drawn as SVG.
//
// Layout, in three passes:
//   1. layers: a step's layer is one more than its deepest dependency (the
//      longest path from a step with none), so every edge points one way,
//      from a lower layer to a higher one;
//   2. an edge that spans several layers gets a waypoint in each layer it
//      crosses, so the ordering below sees it and it bends around nodes;
//   3. order within a layer: start in plan order, then sweep down and up
//      moving each node to the mean position of its neighbours in the layer
//      before (the barycentre heuristic), keeping the order with the fewest
//      edge crossings seen.
// Pure functions of the plan: no DOM, so node's test runner checks them
// (ui/test/dag.test.mjs).

import { esc } from './html.js';

// Steps and edges of a plan. A plan where no step has depends_on runs its
// steps one after another (docs/workflow-plans.md): each depends on the one
// before it.
export function planGraph(plan) {
  const steps = Array.isArray(plan && plan.steps) ? plan.steps : [];
  const dag = steps.some((s) => Object.prototype.hasOwnProperty.call(s, 'depends_on'));
  const nodes = steps.map((s) => ({
    id: String(s.id),
    agent: s.agent ? String(s.agent) : '',
    forEach: s.for_each !== undefined,
    when: s.when !== undefined,
  }));
  const ids = new Set(nodes.map((n) => n.id));
  const edges = [];
  if (dag) {
    for (const s of steps) {
      for (const d of s.depends_on || []) {
        if (ids.has(String(d))) edges.push([String(d), String(s.id)]);
      }
    }
  } else {
    for (let i = 1; i < nodes.length; i++) edges.push([nodes[i - 1].id, nodes[i].id]);
  }
  return { nodes, edges };
}

// Layer of every node: 0 for nodes without incoming edges, else one more
// than the highest layer among its predecessors. Edges in a cycle (which a
// valid plan has none of) are ignored.
export function assignLayers(ids, edges) {
  const preds = new Map(ids.map((id) => [id, []]));
  for (const [from, to] of edges) {
    if (preds.has(from) && preds.has(to) && from !== to) preds.get(to).push(from);
  }
  const layer = new Map();
  const visiting = new Set();
  const visit = (id) => {
    if (layer.has(id)) return layer.get(id);
    if (visiting.has(id)) return -1; // a cycle: this edge does not count
    visiting.add(id);
    let l = 0;
    for (const p of preds.get(id)) l = Math.max(l, visit(p) + 1);
    visiting.delete(id);
    layer.set(id, l);
    return l;
  };
  for (const id of ids) visit(id);
  return layer;
}

// Number of pairs of edges that cross between consecutive layers, for an
// order given as layers (arrays of node keys) and edges between adjacent
// layers ([upperKey, lowerKey]).
export function countCrossings(layers, segments) {
  const pos = new Map();
  layers.forEach((layer) => layer.forEach((k, i) => pos.set(k, i)));
  const layerOf = new Map();
  layers.forEach((layer, li) => layer.forEach((k) => layerOf.set(k, li)));
  const byLayer = new Map();
  for (const [a, b] of segments) {
    const la = layerOf.get(a);
    if (la === undefined || layerOf.get(b) !== la + 1) continue;
    if (!byLayer.has(la)) byLayer.set(la, []);
    byLayer.get(la).push([pos.get(a), pos.get(b)]);
  }
  let crossings = 0;
  for (const list of byLayer.values()) {
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const [a1, b1] = list[i];
        const [a2, b2] = list[j];
        if ((a1 - a2) * (b1 - b2) < 0) crossings++;
      }
    }
  }
  return crossings;
}

// The layout of nodes `ids` (in plan order) with `edges` ([from, to]):
//   layers:    arrays of keys, top to bottom; a key is a node id, or a
//              waypoint "\u0000from\u0000to\u0000k" of a long edge
//   layerOf:   Map id → layer
//   paths:     for every edge, the keys it passes through, from → to
//   crossings: edge crossings of the chosen order
export function layoutDag(ids, edges) {
  const layerOf = assignLayers(ids, edges);
  const nLayers = ids.length ? Math.max(...ids.map((id) => layerOf.get(id))) + 1 : 0;
  const layers = Array.from({ length: nLayers }, () => []);
  for (const id of ids) layers[layerOf.get(id)].push(id);

  const segments = [];
  const paths = [];
  for (const [from, to] of edges) {
    const lf = layerOf.get(from);
    const lt = layerOf.get(to);
    if (lf === undefined || lt === undefined || lt <= lf) continue;
    const path = [from];
    for (let l = lf + 1; l < lt; l++) {
      const key = `\u0000${from}\u0000${to}\u0000${l}`;
      layers[l].push(key);
      path.push(key);
    }
    path.push(to);
    for (let i = 1; i < path.length; i++) segments.push([path[i - 1], path[i]]);
    paths.push({ from, to, keys: path });
  }

  const up = new Map();
  const down = new Map();
  for (const layer of layers) for (const k of layer) {
    up.set(k, []);
    down.set(k, []);
  }
  for (const [a, b] of segments) {
    down.get(a).push(b);
    up.get(b).push(a);
  }

  const reorder = (layer, neighbours, pos) => {
    const keyed = layer.map((k, i) => {
      const ns = neighbours.get(k);
      const bary = ns.length ? ns.reduce((s, n) => s + pos.get(n), 0) / ns.length : i;
      return { k, bary, i };
    });
    keyed.sort((x, y) => x.bary - y.bary || x.i - y.i);
    return keyed.map((x) => x.k);
  };
  const positions = (ls) => {
    const pos = new Map();
    ls.forEach((layer) => layer.forEach((k, i) => pos.set(k, i)));
    return pos;
  };

  let best = layers.map((l) => l.slice());
  let bestCrossings = countCrossings(best, segments);
  let current = best.map((l) => l.slice());
  for (let iter = 0; iter < 12 && bestCrossings > 0; iter++) {
    const downward = iter % 2 === 0;
    if (downward) {
      for (let l = 1; l < current.length; l++) current[l] = reorder(current[l], up, positions(current));
    } else {
      for (let l = current.length - 2; l >= 0; l--) current[l] = reorder(current[l], down, positions(current));
    }
    const c = countCrossings(current, segments);
    if (c < bestCrossings) {
      bestCrossings = c;
      best = current.map((l) => l.slice());
    }
  }
  return { layers: best, layerOf, paths, crossings: bestCrossings };
}


// Status shown by colour and by a symbol and word, so colour is never the
// only sign.
export const STATUS_SYMBOL = {
  PENDING: '○',
  RUNNING: '▶',
  COMPLETED: '✓',
  FAILED: '✗',
  CANCELLED: '■',
  SKIPPED: '↷',
};

const NODE_W = 170;
const NODE_H = 80;
const GAP_X = 36;
const ERR_LINE = 27; // characters of an error per line on a node
const GAP_Y = 48;

// SVG text of the plan's graph, top to bottom. `state` (null for a plan
// shown without a run) maps a step id to
// {status, items, error} (items: a for_each step's element count once
// known; error: the latest failure, shown on the node).
// Nodes are focusable (tabindex) and carry data-step, so the page can
// select one with the mouse or the keyboard.
export function renderDag(plan, state = null, selected = '') {
  const planOnly = state === null; // a plan, not a run: no statuses
  const { nodes, edges } = planGraph(plan);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const layout = layoutDag(
    nodes.map((n) => n.id),
    edges,
  );
  const width = Math.max(1, ...layout.layers.map((l) => l.length)) * (NODE_W + GAP_X) + GAP_X;
  const height = layout.layers.length * (NODE_H + GAP_Y) + GAP_Y;
  const xy = new Map();
  layout.layers.forEach((layer, li) => {
    const row = layer.length * (NODE_W + GAP_X) - GAP_X;
    const x0 = (width - row) / 2;
    layer.forEach((k, i) => xy.set(k, { x: x0 + i * (NODE_W + GAP_X), y: GAP_Y / 2 + li * (NODE_H + GAP_Y) }));
  });
  const parts = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="dag" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="group" aria-label="workflow graph">`,
  );
  parts.push(
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>',
  );
  for (const p of layout.paths) {
    const pts = p.keys.map((k, i) => {
      const c = xy.get(k);
      const cx = c.x + NODE_W / 2;
      if (i === 0) return [cx, c.y + NODE_H];
      if (i === p.keys.length - 1) return [cx, byId.get(k) && byId.get(k).forEach ? c.y - 8 : c.y]; // above a fan-out's stack
      return [cx, c.y + NODE_H / 2];
    });
    let d = `M${pts[0][0]},${pts[0][1]}`;
    for (let i = 1; i < pts.length; i++) {
      const [x0, y0] = pts[i - 1];
      const [x1, y1] = pts[i];
      const my = (y0 + y1) / 2;
      d += ` C${x0},${my} ${x1},${my} ${x1},${y1}`;
    }
    parts.push(`<path class="edge" d="${d}" marker-end="url(#arrow)" data-from="${esc(p.from)}" data-to="${esc(p.to)}"/>`);
  }
  for (const n of nodes) {
    const c = xy.get(n.id);
    const st = (state && state[n.id]) || {};
    const status = st.status || 'PENDING';
    const sym = STATUS_SYMBOL[status] || '?';
    const cls = `node${planOnly ? '' : ` status-${status.toLowerCase()}`}${selected === n.id ? ' selected' : ''}`;
    const label =
      `step ${n.id}, agent ${n.agent}${planOnly ? '' : `, ${status.toLowerCase()}`}${n.forEach ? ', for each' : ''}` +
      (st.error ? `, error: ${st.error}` : '');
    parts.push(
      `<g class="${cls}" data-step="${esc(n.id)}"${planOnly ? ' role="img"' : ` data-status="${status}" tabindex="0" role="button"`} aria-label="${esc(label)}" transform="translate(${c.x},${c.y})">`,
    );
    if (n.forEach) {
      // A fan-out: a stack of cards behind the node.
      parts.push(`<rect class="stack" x="8" y="-8" width="${NODE_W}" height="${NODE_H}" rx="6"/>`);
      parts.push(`<rect class="stack" x="4" y="-4" width="${NODE_W}" height="${NODE_H}" rx="6"/>`);
    }
    parts.push(`<rect class="box" width="${NODE_W}" height="${NODE_H}" rx="6"/>`);
    parts.push(`<text class="title" x="10" y="21">${esc(truncate(n.id, 20))}</text>`);
    const parts2 = planOnly ? [] : [`${sym} ${status.toLowerCase()}`];
    if (n.forEach) parts2.push(planOnly ? `for each · ${truncate(n.agent, 12)}` : `for each ×${st.items === undefined ? '…' : st.items}`);
    else if (n.agent) parts2.push(planOnly ? `agent ${truncate(n.agent, 18)}` : truncate(n.agent, 12));
    const sub = parts2.join(' · ');
    parts.push(`<text class="sub" x="10" y="40">${esc(sub)}</text>`);
    if (st.error) {
      // Two lines of the error on the node; all of it in the step panel.
      const e = String(st.error);
      const lines = [e.slice(0, ERR_LINE), e.length > ERR_LINE ? truncate(e.slice(ERR_LINE), ERR_LINE) : ''];
      parts.push(
        `<text class="err" x="10" y="57"><tspan x="10">${esc(lines[0])}</tspan><tspan x="10" dy="13">${esc(lines[1])}</tspan></text>`,
      );
    }
    parts.push(`<title>${esc(label)}</title>`);
    parts.push('</g>');
  }
  parts.push('</svg>');
  return parts.join('');
}

function truncate(s, n) {
  s = String(s);
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

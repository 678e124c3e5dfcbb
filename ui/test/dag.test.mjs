// Unit tests of the DAG layout (ui/dag.js), run by ctest with node's own
// test runner: `node --test ui/test/`.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { planGraph, assignLayers, layoutDag, countCrossings, renderDag } from '../dag.js';

const examples = fileURLToPath(new URL('../../examples/', import.meta.url));

function checkLayersRespectEdges(ids, edges) {
  const { layerOf, layers } = layoutDag(ids, edges);
  for (const [a, b] of edges) {
    assert.ok(layerOf.get(a) < layerOf.get(b), `edge ${a}→${b}: layer ${layerOf.get(a)} < ${layerOf.get(b)}`);
  }
  // Every node appears once.
  const placed = layers.flat().filter((k) => !k.startsWith('\u0000'));
  assert.deepEqual([...placed].sort(), [...ids].sort());
}

test('a diamond is laid out in three layers without crossings', () => {
  const ids = ['a', 'b', 'c', 'd'];
  const edges = [
    ['a', 'b'],
    ['a', 'c'],
    ['b', 'd'],
    ['c', 'd'],
  ];
  const l = layoutDag(ids, edges);
  assert.deepEqual(
    l.layers.map((x) => x.length),
    [1, 2, 1],
  );
  assert.equal(l.layerOf.get('a'), 0);
  assert.equal(l.layerOf.get('d'), 2);
  assert.equal(l.crossings, 0);
  checkLayersRespectEdges(ids, edges);
});

test('a layer is a step one below its deepest dependency', () => {
  const layer = assignLayers(
    ['a', 'b', 'c', 'd'],
    [
      ['a', 'b'],
      ['b', 'c'],
      ['a', 'c'],
      ['a', 'd'],
    ],
  );
  assert.deepEqual(Object.fromEntries(layer), { a: 0, b: 1, c: 2, d: 1 });
});

test('the order within layers removes crossings that plan order has', () => {
  // In plan order a→d and b→c cross; the layout swaps c and d.
  const ids = ['a', 'b', 'c', 'd'];
  const edges = [
    ['a', 'd'],
    ['b', 'c'],
  ];
  assert.equal(countCrossings([['a', 'b'], ['c', 'd']], edges), 1);
  const l = layoutDag(ids, edges);
  assert.equal(l.crossings, 0);
  assert.deepEqual(l.layers[1], ['d', 'c']);
});

test('a long edge gets a waypoint in each layer it passes, so it is counted and routed', () => {
  const ids = ['a', 'b', 'c', 'x'];
  const edges = [
    ['a', 'b'],
    ['b', 'c'],
    ['a', 'c'],
  ];
  const l = layoutDag(ids, edges);
  const long = l.paths.find((p) => p.from === 'a' && p.to === 'c');
  assert.equal(long.keys.length, 3, 'a → waypoint in layer 1 → c');
  assert.ok(l.layers[1].includes(long.keys[1]));
  assert.equal(l.crossings, 0);
});

test('random DAGs: layers always respect dependencies, and ordering never adds crossings', () => {
  let seed = 42;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (let t = 0; t < 200; t++) {
    const n = 2 + Math.floor(rand() * 12);
    const ids = Array.from({ length: n }, (_, i) => `s${i}`);
    const edges = [];
    for (let j = 1; j < n; j++) {
      for (let i = 0; i < j; i++) if (rand() < 0.3) edges.push([ids[i], ids[j]]);
    }
    checkLayersRespectEdges(ids, edges);
    const l = layoutDag(ids, edges);
    // The plan-order arrangement of the same layers, for comparison.
    const initial = l.layers.map((layer) =>
      layer.slice().sort((x, y) => order(x, ids) - order(y, ids)),
    );
    const segments = l.paths.flatMap((p) => p.keys.slice(1).map((k, i) => [p.keys[i], k]));
    assert.ok(l.crossings <= countCrossings(initial, segments), `case ${t}`);
    assert.equal(l.crossings, countCrossings(l.layers, segments));
  }
});

function order(key, ids) {
  if (!key.startsWith('\u0000')) return ids.indexOf(key);
  return ids.indexOf(key.split('\u0000')[1]) + 0.5;
}

test('a plan without depends_on is a chain in list order', () => {
  const plan = JSON.parse(readFileSync(examples + 'summarize.json', 'utf8'));
  const g = planGraph(plan);
  assert.deepEqual(g.edges, [['fetch', 'shout']]);
});

test('the research example: fan-out, parallel branches and a join, no crossings', () => {
  const plan = JSON.parse(readFileSync(examples + 'research.json', 'utf8'));
  const g = planGraph(plan);
  assert.equal(g.nodes.find((n) => n.id === 'search').forEach, true);
  const l = layoutDag(
    g.nodes.map((n) => n.id),
    g.edges,
  );
  assert.equal(l.crossings, 0);
  assert.deepEqual(l.layers[0], ['plan']);
  assert.deepEqual([...l.layers[1]].sort(), ['escalate', 'search', 'think']);
  assert.deepEqual(l.layers[2], ['report']);
  checkLayersRespectEdges(
    g.nodes.map((n) => n.id),
    g.edges,
  );
});

test('the SVG has a focusable node per step with its status in words, and escapes text', () => {
  const plan = {
    steps: [
      { id: 'a<b', agent: 'echo' },
      { id: 'fan', agent: 'upper', for_each: '${input.xs}', depends_on: ['a<b'] },
    ],
  };
  const svg = renderDag(plan, { 'a<b': { status: 'COMPLETED' }, fan: { status: 'FAILED', items: 3, error: 'agent said no' } });
  assert.ok(svg.includes('data-step="a&lt;b"'));
  assert.ok(!svg.includes('a<b'), 'no raw markup from step ids');
  assert.ok(svg.includes('✓ completed'));
  assert.ok(svg.includes('for each ×3'));
  assert.ok(svg.includes('<tspan x="10">agent said no</tspan>'), 'the error is on its node');
  assert.ok(svg.includes('error: agent said no"'), 'and in its accessible name');
  assert.equal((svg.match(/tabindex="0"/g) || []).length, 2);
  assert.equal((svg.match(/class="edge"/g) || []).length, 1);
});

test('a plan without a run is drawn without statuses', () => {
  const svg = renderDag({ steps: [{ id: 'a', agent: 'echo' }] });
  assert.ok(svg.includes('agent echo'));
  assert.ok(!svg.includes('pending'));
  assert.ok(!svg.includes('data-status'));
});

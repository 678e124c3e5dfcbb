// Unit tests of the run timeline (ui/timeline.js): `node --test ui/test/`.
import test from 'node:test';
import assert from 'node:assert/strict';
import { timelineRows, renderTimeline, formatMs } from '../timeline.js';

const at = (ms) => new Date(Date.UTC(2026, 10, 27, 12, 0, 0) + ms).toISOString();

test('one row per attempt and element, in start order, open bars end now', () => {
  const steps = [
    { id: 3, step_id: 'call', item_index: null, attempt: 2, status: 'RUNNING', started_at: at(500), completed_at: null },
    { id: 1, step_id: 'call', item_index: null, attempt: 1, status: 'FAILED', started_at: at(0), completed_at: at(100) },
    { id: 2, step_id: 'fan', item_index: 0, attempt: 1, status: 'COMPLETED', started_at: at(50), completed_at: at(80) },
  ];
  const now = Date.parse(at(900));
  const rows = timelineRows(steps, now);
  assert.deepEqual(
    rows.map((r) => r.label),
    ['call', 'fan[0]', 'call · attempt 2'],
  );
  assert.equal(rows[0].end - rows[0].start, 100);
  assert.equal(rows[2].end, now, 'a running attempt is drawn up to now');
  const svg = renderTimeline(steps, now);
  assert.equal((svg.match(/<g class="bar /g) || []).length, 3);
  assert.ok(svg.includes('status-failed'));
  assert.ok(svg.includes('✗ 100 ms'), 'duration and status symbol, not colour alone');
});

test('durations read naturally', () => {
  assert.equal(formatMs(12), '12 ms');
  assert.equal(formatMs(2500), '2.50 s');
  assert.equal(formatMs(61000), '1 min 1 s');
  assert.equal(renderTimeline([]).includes('No step has started'), true);
});

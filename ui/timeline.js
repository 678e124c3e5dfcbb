// The run's timeline: one bar per step attempt (each for_each element and
// each retry on its own row), from its start to its end (or to now while it
// runs), drawn as SVG. Pure: the tests and the page call the same function.
import { STATUS_SYMBOL } from './dag.js';
import { esc } from './html.js';


export function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  const s = Math.round((ms % 60000) / 1000);
  return `${m} min ${s} s`;
}

// Rows of the timeline, in start order: label, status, start and end (ms).
export function timelineRows(steps, now = Date.now()) {
  return steps
    .map((s) => {
      const start = Date.parse(s.started_at);
      const end = s.completed_at ? Date.parse(s.completed_at) : now;
      const item = s.item_index === null || s.item_index === undefined ? '' : `[${s.item_index}]`;
      const attempt = s.attempt > 1 ? ` · attempt ${s.attempt}` : '';
      return { id: s.id, step: s.step_id, label: `${s.step_id}${item}${attempt}`, status: s.status, start, end };
    })
    .filter((r) => !Number.isNaN(r.start))
    .sort((a, b) => a.start - b.start || a.id - b.id);
}

export function renderTimeline(steps, now = Date.now()) {
  const rows = timelineRows(steps, now);
  if (!rows.length) return '<p class="muted">No step has started yet.</p>';
  const t0 = Math.min(...rows.map((r) => r.start));
  const t1 = Math.max(t0 + 1, ...rows.map((r) => r.end));
  const labelW = 190;
  const barW = 560;
  const rowH = 22;
  const width = labelW + barW + 90;
  const height = rows.length * rowH + 28;
  const x = (t) => labelW + ((t - t0) / (t1 - t0)) * barW;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="timeline of ${rows.length} step attempts over ${esc(formatMs(t1 - t0))}">`,
  ];
  // Axis: start, middle, end.
  for (const f of [0, 0.5, 1]) {
    const tx = labelW + f * barW;
    parts.push(`<line class="tick" x1="${tx}" y1="0" x2="${tx}" y2="${height - 18}"/>`);
    parts.push(`<text class="axis" x="${tx}" y="${height - 4}" text-anchor="middle">${esc(formatMs(f * (t1 - t0)))}</text>`);
  }
  rows.forEach((r, i) => {
    const y = i * rowH + 4;
    const bx = x(r.start);
    const bw = Math.max(2, x(r.end) - bx);
    const sym = STATUS_SYMBOL[r.status] || '';
    const dur = formatMs(r.end - r.start);
    parts.push(`<g class="bar status-${esc(r.status.toLowerCase())}" data-step="${esc(r.step)}">`);
    parts.push(`<text class="label" x="${labelW - 8}" y="${y + 14}" text-anchor="end">${esc(r.label)}</text>`);
    parts.push(`<rect x="${bx}" y="${y + 2}" width="${bw}" height="${rowH - 6}" rx="3"/>`);
    parts.push(`<text class="dur" x="${bx + bw + 6}" y="${y + 14}">${esc(`${sym} ${dur}`)}</text>`);
    parts.push(`<title>${esc(`${r.label}: ${r.status.toLowerCase()}, ${dur}`)}</title>`);
    parts.push('</g>');
  });
  parts.push('</svg>');
  return parts.join('');
}

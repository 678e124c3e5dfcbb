// The agentflow web console: runs, a run's graph and timeline (live),
// workflows and agents. Plain ES modules served by the agentflow binary
// itself (src/ui), no build step. Pages are addressed by the URL's hash:
//   #/runs?workflow=&status=&q=    #/runs/RUN_ID
//   #/workflows                    #/workflows/ID?version=N
//   #/agents
import { call, apiKey, setApiKey, setUnauthenticatedHandler, followRun, ApiError } from './api.js';
import { renderDag, planGraph, STATUS_SYMBOL } from './dag.js';
import { renderTimeline, formatMs } from './timeline.js';
import { esc } from './html.js';

const main = document.getElementById('main');
const live = document.getElementById('live');
const STATUSES = ['PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'];
const TERMINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);
const SEARCH_WINDOW = 500; // runs searched for a part of an id, newest first
const RUN_ID = /^run-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const pretty = (v) => esc(JSON.stringify(v, null, 2));
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '–');
const duration = (a, b) => (a ? formatMs((b ? Date.parse(b) : Date.now()) - Date.parse(a)) : '–');

export function badge(status) {
  const s = String(status || 'UNKNOWN');
  return `<span class="badge status-${esc(s.toLowerCase())}"><span aria-hidden="true">${STATUS_SYMBOL[s] || '•'}</span> ${esc(s)}</span>`;
}

function announce(text) {
  live.textContent = text;
}

// Replaces el's markup only when it changed, and gives the focus back to
// the element with the same `key` attribute afterwards: pages that refresh
// by themselves must not take the focus (or a selection, or a scroll
// position) from someone using them.
function setHtml(el, html, key = 'data-key') {
  if (el.__html === html) return;
  const active = document.activeElement;
  const holder = active && el.contains(active) ? active.closest(`[${key}]`) : null;
  const id = holder ? holder.getAttribute(key) : null;
  const tag = active ? active.tagName : '';
  el.innerHTML = html;
  el.__html = html;
  if (id === null) return;
  const again = [...el.querySelectorAll(`[${key}]`)].find((n) => n.getAttribute(key) === id);
  if (!again) return;
  const target = again.tagName === tag ? again : again.querySelector(tag.toLowerCase()) || again;
  target.focus({ preventScroll: true });
}

// ---------------------------------------------------------------- routing

let cleanup = () => {};

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/runs';
  const [path, query = ''] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

async function route() {
  cleanup();
  cleanup = () => {};
  const { parts, params } = parseHash();
  for (const a of document.querySelectorAll('nav a')) {
    a.setAttribute('aria-current', a.dataset.section === parts[0] ? 'page' : 'false');
  }
  try {
    if (parts[0] === 'runs' && parts[1]) cleanup = await runPage(parts[1]);
    else if (parts[0] === 'workflows' && parts[1]) cleanup = await workflowPage(parts[1], params);
    else if (parts[0] === 'workflows') cleanup = await workflowsPage();
    else if (parts[0] === 'agents') cleanup = await agentsPage();
    else cleanup = await runsPage(params);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return; // the key dialog is open
    main.innerHTML = `<h1>Something went wrong</h1><p class="error" role="alert">${esc(e.message)}</p>`;
  }
  main.focus({ preventScroll: true });
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// ---------------------------------------------------------------- runs list

async function runsPage(params) {
  const workflow = params.get('workflow') || '';
  const status = params.get('status') || '';
  const q = (params.get('q') || '').trim();
  const tokens = ['']; // page tokens seen: tokens[i] opens page i
  let page = 0;
  const wfs = await call('GET', '/workflows?limit=200');
  const names = new Map(wfs.items.map((w) => [w.workflow_id, w.name]));
  main.innerHTML = `
    <h1>Runs</h1>
    <form id="filters" class="filters" role="search">
      <label>Workflow
        <select name="workflow"><option value="">all</option>${wfs.items
          .map((w) => `<option value="${esc(w.workflow_id)}"${w.workflow_id === workflow ? ' selected' : ''}>${esc(w.name)}</option>`)
          .join('')}</select></label>
      <label>Status
        <select name="status"><option value="">all</option>${STATUSES.map(
          (s) => `<option${s === status ? ' selected' : ''}>${s}</option>`,
        ).join('')}</select></label>
      <label>Run id (or part of one) <input name="q" value="${esc(q)}" placeholder="run-…" autocomplete="off"></label>
      <button type="submit">Apply</button>
    </form>
    <div id="runs-table" aria-live="polite"></div>
    <div class="pager">
      <button type="button" id="newer" disabled>← Newer</button>
      <span id="page-no">page 1</span>
      <button type="button" id="older" disabled>Older →</button>
    </div>
    <p class="muted">Refreshes every 2 s.</p>`;
  const form = main.querySelector('#filters');
  const submit = () => {
    const f = new FormData(form);
    const p = new URLSearchParams();
    for (const k of ['workflow', 'status', 'q']) if (f.get(k)) p.set(k, String(f.get(k)).trim());
    go(`#/runs${p.toString() ? '?' + p : ''}`);
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submit();
  });
  for (const sel of form.querySelectorAll('select')) sel.addEventListener('change', submit);

  const table = main.querySelector('#runs-table');
  const older = main.querySelector('#older');
  const newer = main.querySelector('#newer');
  const load = async () => {
    let items = [];
    let next = null;
    if (q) {
      // A whole id is looked up; a part of one is searched for among the
      // newest runs.
      if (RUN_ID.test(q)) {
        try {
          items = [await call('GET', `/runs/${encodeURIComponent(q)}`)];
        } catch (e) {
          if (!(e instanceof ApiError) || e.status !== 404) throw e;
        }
      } else {
        const recent = await call('GET', `/runs?limit=${SEARCH_WINDOW}`);
        items = recent.items.filter((r) => r.run_id.includes(q));
      }
    } else {
      const p = new URLSearchParams({ limit: '20' });
      if (workflow) p.set('workflow_id', workflow);
      if (status) p.set('status', status);
      if (tokens[page]) p.set('page_token', tokens[page]);
      const res = await call('GET', `/runs?${p}`);
      items = res.items;
      next = res.next_page_token;
    }
    tokens[page + 1] = next || undefined;
    older.disabled = !next;
    newer.disabled = page === 0;
    main.querySelector('#page-no').textContent = `page ${page + 1}`;
    const html = items.length
      ? `<table class="runs"><thead><tr><th scope="col">Run</th><th scope="col">Workflow</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Duration</th></tr></thead><tbody>${items
          .map(
            (r) => `<tr data-run="${esc(r.run_id)}">
              <td><a href="#/runs/${encodeURIComponent(r.run_id)}" class="mono">${esc(r.run_id)}</a></td>
              <td>${esc(names.get(r.workflow_id) || r.workflow_id)} <span class="muted">v${esc(r.workflow_version)}</span></td>
              <td>${badge(r.status)}</td>
              <td>${esc(when(r.created_at))}</td>
              <td>${esc(duration(r.started_at, r.completed_at))}</td></tr>`,
          )
          .join('')}</tbody></table>`
      : `<p class="muted">${q ? `No run has the id ${esc(q)}, and none of the newest ${SEARCH_WINDOW} has it in its id.` : 'No runs yet: start one from a workflow’s page.'}</p>`;
    setHtml(table, html, 'data-run');
  };
  older.addEventListener('click', () => {
    page++;
    load().catch(showError);
  });
  newer.addEventListener('click', () => {
    page = Math.max(0, page - 1);
    load().catch(showError);
  });
  await load();
  const timer = setInterval(() => load().catch(() => {}), 2000);
  return () => clearInterval(timer);
}

function showError(e) {
  if (e instanceof ApiError && e.status === 401) return;
  announce(e.message);
  const box = main.querySelector('.page-error') || main.appendChild(document.createElement('p'));
  box.className = 'page-error error';
  box.setAttribute('role', 'alert');
  box.textContent = e.message;
}

// ---------------------------------------------------------------- run page

// What the graph shows per step, from its executions: the status of the
// newest row for the step (the aggregate row of a for_each), the element
// count of a for_each, and the latest error.
function stepState(steps) {
  const state = {};
  const rows = [...steps.values()].sort((a, b) => a.id - b.id);
  for (const s of rows) {
    const st = (state[s.step_id] ||= { items: undefined, itemSet: new Set() });
    if (s.item_index === null || s.item_index === undefined) {
      st.status = s.status;
      if (s.input && Array.isArray(s.input.items)) st.items = s.input.items.length;
    } else {
      st.itemSet.add(s.item_index);
      if (!st.status) st.status = 'RUNNING';
    }
    if (s.error_message) st.error = s.error_message;
    else if (s.status === 'COMPLETED' && (s.item_index === null || s.item_index === undefined)) st.error = undefined;
  }
  for (const st of Object.values(state)) {
    if (st.items === undefined && st.itemSet.size) st.items = st.itemSet.size;
    delete st.itemSet;
  }
  return state;
}

async function runPage(runId) {
  let run = await call('GET', `/runs/${encodeURIComponent(runId)}`);
  const wf = await call('GET', `/workflows/${encodeURIComponent(run.workflow_id)}?version=${run.workflow_version}`);
  const steps = new Map();
  let selected = '';
  const controller = new AbortController();

  main.innerHTML = `
    <p class="crumbs"><a href="#/runs">Runs</a> / <span class="mono">${esc(runId)}</span></p>
    <h1>Run <span class="mono">${esc(runId)}</span> <span id="run-status">${badge(run.status)}</span></h1>
    <dl class="facts" id="run-facts"></dl>
    <div id="run-actions" class="actions"></div>
    <section aria-labelledby="graph-h"><h2 id="graph-h">Graph</h2>
      <p class="muted">Select a step (click, or Tab and Enter) to see its input, output and error.</p>
      <div id="dag" class="scroll"></div></section>
    <section aria-labelledby="detail-h"><h2 id="detail-h">Step</h2><div id="step-detail"></div></section>
    <section aria-labelledby="timeline-h"><h2 id="timeline-h">Timeline</h2><div id="timeline" class="scroll"></div></section>
    <section class="io" aria-labelledby="io-h"><h2 id="io-h">Input and output</h2>
      <div class="cols"><div><h3>Input</h3><pre id="run-input"></pre></div><div><h3>Output</h3><pre id="run-output"></pre></div></div>
    </section>`;

  const dag = main.querySelector('#dag');
  const renderActions = () => {
    const box = main.querySelector('#run-actions');
    if (!TERMINAL.has(run.status)) {
      if (box.dataset.mode === 'cancel') return; // keep what the user is typing
      box.dataset.mode = 'cancel';
      box.innerHTML = `<form id="cancel-form" class="inline">
          <label>Reason <input name="reason" id="cancel-reason" placeholder="why (optional)"></label>
          <button type="submit" class="danger">Cancel run</button>
          <span class="error" id="cancel-error" role="alert"></span></form>`;
      box.querySelector('#cancel-form').addEventListener('submit', async (e) => {
        e.preventDefault();
        const reason = box.querySelector('#cancel-reason').value.trim();
        try {
          // The answer is the run when the request was recorded; the event
          // stream may already have delivered newer states, so it is not
          // applied here: the stream brings the CANCELLED run.
          await call('POST', `/runs/${encodeURIComponent(runId)}/cancel`, reason ? { reason, cancelled_by: 'web console' } : { cancelled_by: 'web console' });
          announce(`cancellation requested for run ${runId}`);
        } catch (err) {
          box.querySelector('#cancel-error').textContent = err.message;
        }
      });
    } else if (run.status === 'FAILED' || run.status === 'CANCELLED') {
      if (box.dataset.mode === 'retry') return;
      box.dataset.mode = 'retry';
      box.innerHTML = `<form id="retry-form">
          <label for="retry-input">Input for the retry (JSON object; edit to change it)</label>
          <textarea id="retry-input" rows="4" aria-describedby="retry-error">${pretty(run.input)}</textarea>
          <p class="error" id="retry-error" role="alert"></p>
          <button type="submit">Retry run</button></form>`;
      const input = box.querySelector('#retry-input');
      const err = box.querySelector('#retry-error');
      input.addEventListener('input', () => validateJsonField(input, err));
      box.querySelector('#retry-form').addEventListener('submit', async (e) => {
        e.preventDefault();
        const value = validateJsonField(input, err);
        if (value === undefined) return input.focus();
        try {
          await call('POST', `/runs/${encodeURIComponent(runId)}/retry`, { input: value });
          go(`#/runs/${encodeURIComponent(runId)}`);
        } catch (ex) {
          err.textContent = ex.message;
        }
      });
    } else {
      box.dataset.mode = '';
      box.innerHTML = '';
    }
  };

  const renderDetail = () => {
    const box = main.querySelector('#step-detail');
    if (!selected) {
      setHtml(box, '<p class="muted">No step selected.</p>');
      return;
    }
    const rows = [...steps.values()].filter((s) => s.step_id === selected).sort((a, b) => a.id - b.id);
    const plan = (wf.plan.steps || []).find((s) => String(s.id) === selected) || {};
    setHtml(box, `<h3>${esc(selected)} <span class="muted">agent ${esc(plan.agent || '')}</span></h3>${
      rows.length
        ? rows
            .map(
              (s) => `<article class="execution" data-execution="${s.id}">
        <h4>${badge(s.status)} ${s.item_index === null || s.item_index === undefined ? (plan.for_each !== undefined ? 'all elements' : '') : `element ${s.item_index}`} attempt ${esc(s.attempt)}
          <span class="muted">${esc(when(s.started_at))} · ${esc(duration(s.started_at, s.completed_at))}</span></h4>
        ${s.error_message ? `<p class="error step-error"><strong>Error:</strong> ${esc(s.error_message)}</p>` : ''}
        <div class="cols"><div><h5>Input</h5><pre>${pretty(s.input)}</pre></div><div><h5>Output</h5><pre>${pretty(s.output)}</pre></div></div>
      </article>`,
            )
            .join('')
        : '<p class="muted">This step has not run.</p>'
    }`, 'data-execution');
  };

  let queued = false;
  const render = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      const state = stepState(steps);
      if (!selected) {
        const failed = Object.entries(state).find(([, st]) => st.status === 'FAILED');
        if (failed) selected = failed[0];
      }
      setHtml(main.querySelector('#run-status'), badge(run.status));
      setHtml(main.querySelector('#run-facts'), `
        <dt>Workflow</dt><dd><a href="#/workflows/${encodeURIComponent(run.workflow_id)}?version=${run.workflow_version}">${esc(wf.name)}</a> v${esc(run.workflow_version)}</dd>
        <dt>Attempt</dt><dd>${esc(run.attempt)}</dd>
        <dt>Created</dt><dd>${esc(when(run.created_at))}</dd>
        <dt>Duration</dt><dd>${esc(duration(run.started_at, run.completed_at))}</dd>
        ${run.error_message ? `<dt>Error</dt><dd class="error">${esc(run.error_message)}</dd>` : ''}
        ${run.cancel_reason ? `<dt>Cancel reason</dt><dd>${esc(run.cancel_reason)}${run.cancelled_by ? ` (by ${esc(run.cancelled_by)})` : ''}</dd>` : ''}`);
      setHtml(dag, renderDag(wf.plan, state, selected), 'data-step');
      setHtml(main.querySelector('#timeline'), renderTimeline([...steps.values()]));
      main.querySelector('#run-input').textContent = JSON.stringify(run.input, null, 2);
      main.querySelector('#run-output').textContent = JSON.stringify(run.output, null, 2);
      renderActions();
      renderDetail();
    });
  };

  const select = (node) => {
    if (!node) return;
    selected = node.dataset.step;
    render();
  };
  dag.addEventListener('click', (e) => select(e.target.closest('[data-step]')));
  dag.addEventListener('keydown', (e) => {
    const node = e.target.closest('[data-step]');
    if (!node) return;
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      select(node);
    }
  });

  render();
  followRun(
    runId,
    (event, doc) => {
      if (event === 'run' || event === 'end') {
        const was = run.status;
        run = doc;
        if (was !== run.status) announce(`run ${run.status.toLowerCase()}`);
      } else if (event === 'step') {
        steps.set(doc.id, doc);
      }
      render();
    },
    controller.signal,
  ).catch(showError);
  // While something runs, the timeline's open bars grow.
  const tick = setInterval(() => {
    if (!TERMINAL.has(run.status)) render();
  }, 1000);
  return () => {
    controller.abort();
    clearInterval(tick);
  };
}

// ---------------------------------------------------------------- workflows

async function workflowsPage() {
  const res = await call('GET', '/workflows?limit=200');
  main.innerHTML = `<h1>Workflows</h1>${
    res.items.length
      ? `<table><thead><tr><th scope="col">Name</th><th scope="col">Id</th><th scope="col">Version</th><th scope="col">Steps</th><th scope="col">Updated</th></tr></thead><tbody>${res.items
          .map(
            (w) => `<tr><td><a href="#/workflows/${encodeURIComponent(w.workflow_id)}">${esc(w.name)}</a></td>
          <td class="mono">${esc(w.workflow_id)}</td><td>${esc(w.version)}</td>
          <td>${esc((w.plan.steps || []).length)}</td><td>${esc(when(w.updated_at))}</td></tr>`,
          )
          .join('')}</tbody></table>`
      : '<p class="muted">No workflows yet: create one with <code>agentflow workflow create -f plan.json</code>.</p>'
  }`;
  return () => {};
}

// The parsed value of a JSON field, or undefined with the problem shown
// next to it.
function validateJsonField(input, errorBox) {
  let value;
  let problem = '';
  try {
    value = JSON.parse(input.value.trim() || '{}');
    if (value === null || typeof value !== 'object' || Array.isArray(value)) problem = 'The input must be a JSON object, like {"topic": "x"}.';
  } catch (e) {
    problem = `Not valid JSON: ${e.message}`;
  }
  errorBox.textContent = problem;
  input.setAttribute('aria-invalid', problem ? 'true' : 'false');
  return problem ? undefined : value;
}

async function workflowPage(id, params) {
  const version = params.get('version');
  const wf = await call('GET', `/workflows/${encodeURIComponent(id)}${version ? `?version=${encodeURIComponent(version)}` : ''}`);
  const versions = await call('GET', `/workflows/${encodeURIComponent(wf.workflow_id)}/versions`);
  const { nodes } = planGraph(wf.plan);
  main.innerHTML = `
    <p class="crumbs"><a href="#/workflows">Workflows</a> / ${esc(wf.name)}</p>
    <h1>${esc(wf.name)} <span class="muted">version ${esc(wf.version)}${wf.version === wf.latest_version ? ' (latest)' : ''}</span></h1>
    ${wf.description ? `<p>${esc(wf.description)}</p>` : ''}
    <p class="mono muted">${esc(wf.workflow_id)} · ${nodes.length} step${nodes.length === 1 ? '' : 's'}</p>
    <section aria-labelledby="start-h"><h2 id="start-h">Start a run</h2>
      <form id="start-form" novalidate>
        <label for="run-input">Input (JSON object)</label>
        <textarea id="run-input" name="input" rows="5" aria-describedby="input-error">{}</textarea>
        <p class="error" id="input-error" role="alert"></p>
        <button type="submit" id="start-run">Start run</button>
      </form></section>
    <section aria-labelledby="graph-h"><h2 id="graph-h">Graph</h2><div class="scroll">${renderDag(wf.plan)}</div></section>
    <section aria-labelledby="versions-h"><h2 id="versions-h">Versions</h2><ul class="versions">${(versions.items || [])
      .map(
        (v) => `<li><a href="#/workflows/${encodeURIComponent(wf.workflow_id)}?version=${v.version}"${v.version === wf.version ? ' aria-current="true"' : ''}>version ${esc(v.version)}</a> <span class="muted">${esc(when(v.created_at))}</span></li>`,
      )
      .join('')}</ul></section>
    <section aria-labelledby="plan-h"><h2 id="plan-h">Plan</h2><pre class="plan">${pretty(wf.plan)}</pre></section>`;
  const form = main.querySelector('#start-form');
  const input = main.querySelector('#run-input');
  const err = main.querySelector('#input-error');
  input.addEventListener('input', () => validateJsonField(input, err));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = validateJsonField(input, err);
    if (value === undefined) {
      input.focus();
      return;
    }
    try {
      const run = await call('POST', `/workflows/${encodeURIComponent(wf.workflow_id)}/runs`, { input: value });
      go(`#/runs/${encodeURIComponent(run.run_id)}`);
    } catch (ex) {
      err.textContent = ex.message;
      input.setAttribute('aria-invalid', 'true');
    }
  });
  return () => {};
}

// ---------------------------------------------------------------- agents

const HEALTH_SYMBOL = { healthy: '✓', unhealthy: '✗', unknown: '?' };

async function agentsPage() {
  main.innerHTML = '<h1>Agents</h1><div id="agents-table" aria-live="polite"></div><p class="muted">Refreshes every 5 s.</p>';
  const load = async () => {
    const res = await call('GET', '/agents');
    const html = res.items.length
      ? `<table><thead><tr><th scope="col">Name</th><th scope="col">Transport</th><th scope="col">Endpoint</th><th scope="col">Health</th><th scope="col">Last seen</th></tr></thead><tbody>${res.items
          .map(
            (a) => `<tr><td>${esc(a.name)}</td><td>${esc(a.transport)}</td><td class="mono">${esc(a.url || a.topic || '')}</td>
            <td><span class="badge health-${esc(a.health)}"><span aria-hidden="true">${HEALTH_SYMBOL[a.health] || '?'}</span> ${esc(a.health)}</span>${
              a.health_error ? ` <span class="muted">${esc(a.health_error)}</span>` : ''
            }</td><td>${esc(when(a.last_seen_at || a.health_checked_at))}</td></tr>`,
          )
          .join('')}</tbody></table>`
      : '<p class="muted">No agents registered.</p>';
    setHtml(main.querySelector('#agents-table'), html);
  };
  await load();
  const timer = setInterval(() => load().catch(() => {}), 5000);
  return () => clearInterval(timer);
}

// ---------------------------------------------------------------- API key

const dialog = document.getElementById('key-dialog');
function askForKey(message) {
  if (dialog.open) return;
  document.getElementById('key-message').textContent = message || 'This agentflow requires an API key.';
  document.getElementById('key-input').value = '';
  dialog.showModal();
}
document.getElementById('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const key = document.getElementById('key-input').value.trim();
  if (!key) return;
  setApiKey(key);
  dialog.close();
  updateKeyButton();
  route();
});
document.getElementById('key-cancel').addEventListener('click', () => dialog.close());
const keyButton = document.getElementById('key-button');
function updateKeyButton() {
  keyButton.textContent = apiKey() ? 'Forget API key' : 'API key';
}
keyButton.addEventListener('click', () => {
  if (apiKey()) {
    setApiKey('');
    updateKeyButton();
    route();
  } else {
    askForKey('Enter an API key (kept for this browser tab only).');
  }
});
setUnauthenticatedHandler((e) => {
  setApiKey('');
  updateKeyButton();
  askForKey(e.message);
});

updateKeyButton();
window.addEventListener('hashchange', route);
route();

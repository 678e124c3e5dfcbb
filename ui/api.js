// The console's client of the agentflow API: JSON calls with the API key
// (kept in sessionStorage: this browser tab's session only), and a run's
// event stream read with fetch, because EventSource cannot send an
// Authorization header.

const KEY = 'agentflow.apiKey';

export function apiKey() {
  return sessionStorage.getItem(KEY) || '';
}
export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// Called when a request is refused for want of a (valid) key; set by the app.
let onUnauthenticated = () => {};
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

function headers(extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

export async function call(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(`/api/v1${path}`, init);
  const text = await res.text();
  let doc = null;
  try {
    doc = text ? JSON.parse(text) : null;
  } catch {
    doc = null;
  }
  if (!res.ok) {
    const err = (doc && doc.error) || {};
    const e = new ApiError(res.status, err.code || `HTTP_${res.status}`, err.message || `HTTP ${res.status}`, err.details);
    if (res.status === 401) onUnauthenticated(e);
    throw e;
  }
  return doc;
}

// Follows GET /runs/{id}/events, calling onEvent(name, doc) for each event,
// until the run ends (resolves), `signal` aborts, or the connection fails
// (then it reconnects after a second: the stream starts again with the
// whole run).
export async function followRun(runId, onEvent, signal) {
  for (;;) {
    if (signal.aborted) return;
    try {
      const res = await fetch(`/api/v1/runs/${encodeURIComponent(runId)}/events`, {
        headers: headers({ Accept: 'text/event-stream' }),
        signal,
      });
      if (res.status === 401) {
        onUnauthenticated(new ApiError(401, 'UNAUTHENTICATED', 'an API key is needed'));
        return;
      }
      if (!res.ok) throw new ApiError(res.status, `HTTP_${res.status}`, `HTTP ${res.status}`);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      let ended = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
          const ev = parseEvent(block);
          if (!ev) continue;
          onEvent(ev.event, ev.data ? JSON.parse(ev.data) : null);
          if (ev.event === 'end') ended = true;
        }
      }
      if (ended) return;
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && e.status === 404) throw e;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function parseEvent(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return data.length ? { event, data: data.join('\n') } : null;
}

// End-to-end tests of the web console: Debian's headless Chromium
// (/usr/bin/chromium) driven by playwright-core, against `agentflow serve
// --demo` on loopback. Run by ctest (tests/CMakeLists.txt) after `make test`
// has installed playwright-core from tests/ui/package-lock.json.
//
// Environment: AGENTFLOW_BIN (the binary; default build/agentflow),
// AF_TEST_OUTPUT (where screenshots go; default tests/ui/output),
// CHROMIUM (default /usr/bin/chromium).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.AGENTFLOW_BIN || resolve(here, '../../build/agentflow');
const OUT = process.env.AF_TEST_OUTPUT || join(here, 'output');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 20000; // any one wait; the whole file is bounded by ctest's timeout

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch {
  throw new Error('playwright-core is not installed: run `make test` (it runs `npm ci` in tests/ui)');
}
if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (scripts/install-deps.sh --test)`);
if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build agentflow first, or set AGENTFLOW_BIN`);

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A serve process of our own, on a free loopback port and a fresh data dir.
async function startServe(extraArgs = []) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'af-ui-'));
  const proc = spawn(BIN, ['serve', '--demo', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`agentflow serve exited: ${log}`);
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`agentflow serve did not become ready: ${log}`);
    await sleep(50);
  }
  return {
    base,
    dataDir,
    log: () => log,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.on('exit', r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function api(server, method, path, body, key) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  const r = await fetch(`${server.base}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: HTTP ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function createWorkflow(server, plan) {
  return (await api(server, 'POST', '/workflows', plan)).workflow_id;
}

async function startRun(server, workflow, input = {}) {
  return (await api(server, 'POST', `/workflows/${workflow}/runs`, { input })).run_id;
}

let server;
let browser;

before(async () => {
  mkdirSync(OUT, { recursive: true });
  server = await startServe();
  // --no-sandbox: CI runs as root; --disable-dev-shm-usage: containers' small /dev/shm.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function newPage() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (process.env.DEBUG_UI) console.log('page:', m.text());
    if (m.type() === 'error') errors.push(m.text());
  });
  page.jsErrors = errors;
  return page;
}

test('the runs list shows a new run without a reload', async () => {
  const page = await newPage();
  await page.goto(`${server.base}/#/runs`);
  await page.locator('h1', { hasText: 'Runs' }).waitFor();
  await page.evaluate(() => (window.__sameDocument = true));
  const id = await startRun(server, 'summarize', { topic: 'listed' });
  const row = page.locator(`tr[data-run="${id}"]`);
  await row.waitFor();
  await row.locator('.badge', { hasText: 'COMPLETED' }).waitFor();
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the list refreshed by itself');
  // A keyboard user's focus survives the refresh.
  await row.locator('a').focus();
  const other = await startRun(server, 'summarize', { topic: 'second' });
  await page.locator(`tr[data-run="${other}"]`).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.textContent), id, 'the focus stayed on the run link');
  // Filtering by status and searching by id.
  await page.selectOption('select[name=status]', 'FAILED');
  await page.waitForFunction((runId) => !document.querySelector(`tr[data-run="${runId}"]`), id);
  // A search: the page for `q` has rendered its result (the hash changes
  // within the document, so wait for the new page, not the old row).
  const search = async (q) => {
    await page.goto(`${server.base}/#/runs?q=${encodeURIComponent(q)}`);
    await page.waitForFunction(
      (want) => document.querySelector('input[name=q]')?.value === want && document.querySelector('#runs-table table, #runs-table p'),
      q,
    );
  };
  await search(id);
  await row.waitFor();
  assert.equal(await page.locator('table.runs tbody tr').count(), 1);
  // Part of an id finds the run among the newest ones.
  await search(id.slice(4, 16));
  await row.waitFor();
  assert.equal(await page.locator('table.runs tbody tr').count(), 1);
  await search('no-such-run-id-part');
  assert.match(await page.locator('#runs-table').textContent(), /No run has the id/);
  assert.deepEqual(page.jsErrors, []);
  await page.close();
});

test('the run page draws the DAG and a sleeping step turns from running to completed live', async () => {
  const wf = await createWorkflow(server, {
    name: 'ui-nap',
    steps: [
      { id: 'first', agent: 'echo', input: { text: '${input.topic}' } },
      { id: 'nap', agent: 'sleep', depends_on: ['first'], input: { ms: 2500 } },
      { id: 'fan', agent: 'upper', depends_on: ['first'], for_each: '${input.items}', input: { text: '${item}' } },
      { id: 'join', agent: 'echo', depends_on: ['nap', 'fan'], input: { done: true } },
    ],
  });
  const page = await newPage();
  const id = await startRun(server, wf, { topic: 'nap', items: ['a', 'b', 'c'] });
  await page.goto(`${server.base}/#/runs/${id}`);
  const nap = page.locator('#dag [data-step="nap"]');
  await page.locator('#dag [data-step="nap"][data-status="RUNNING"]').waitFor();
  assert.match(await nap.textContent(), /running/);
  await page.evaluate(() => (window.__sameDocument = true));
  await page.locator('#dag [data-step="nap"][data-status="COMPLETED"]').waitFor();
  await page.locator('#run-status .badge', { hasText: 'COMPLETED' }).waitFor();
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload happened');
  // The graph: four nodes, four edges, the fan-out with its element count.
  assert.equal(await page.locator('#dag [data-step]').count(), 4);
  assert.equal(await page.locator('#dag path.edge').count(), 4);
  assert.match(await page.locator('#dag [data-step="fan"]').textContent(), /for each ×3/);
  // The timeline has a bar per attempt: 3 steps + the fan-out's row + 3 elements.
  assert.equal(await page.locator('#timeline .bar').count(), 7);
  // Keyboard: focus a node and press Enter to see its input and output.
  await page.locator('#dag [data-step="first"]').focus();
  await page.keyboard.press('Enter');
  await page.locator('#step-detail h3', { hasText: 'first' }).waitFor();
  assert.match(await page.locator('#step-detail').textContent(), /"text": "nap"/);
  await page.screenshot({ path: join(OUT, 'run-page.png'), fullPage: true });
  assert.deepEqual(page.jsErrors, []);
  await page.close();
});

test('cancelling from the run page ends the run CANCELLED', async () => {
  const wf = await createWorkflow(server, { name: 'ui-long', steps: [{ id: 'wait', agent: 'sleep', input: { ms: 60000 } }] });
  const id = await startRun(server, wf);
  const page = await newPage();
  await page.goto(`${server.base}/#/runs/${id}`);
  await page.locator('#dag [data-step="wait"][data-status="RUNNING"]').waitFor();
  await page.fill('#cancel-reason', 'changed my mind');
  await page.click('#cancel-form button[type=submit]');
  await page.locator('#run-status .badge', { hasText: 'CANCELLED' }).waitFor();
  const run = await api(server, 'GET', `/runs/${id}`);
  assert.equal(run.status, 'CANCELLED');
  assert.equal(run.cancel_reason, 'changed my mind');
  assert.equal(run.cancelled_by, 'web console');
  // A cancelled run offers a retry.
  await page.locator('#retry-form').waitFor();
  assert.deepEqual(page.jsErrors, []);
  await page.close();
});

test("a failed step's error is visible on its node, and the run can be retried with edited input", async () => {
  const wf = await createWorkflow(server, {
    name: 'ui-fail',
    steps: [{ id: 'doomed', agent: 'fail', input: { permanent: true, message: 'the quota ran out' } }],
  });
  const id = await startRun(server, wf);
  const page = await newPage();
  await page.goto(`${server.base}/#/runs/${id}`);
  const node = page.locator('#dag [data-step="doomed"][data-status="FAILED"]');
  await node.waitFor();
  assert.match(await node.locator('text.err').textContent(), /the quota ran out/, 'the error is on the node');
  assert.match(await node.getAttribute('aria-label'), /failed, error: .*the quota ran out/);
  // The failed step is selected: its error is in the step panel too.
  await page.locator('#step-detail .step-error', { hasText: 'the quota ran out' }).waitFor();
  await page.locator('#run-status .badge', { hasText: 'FAILED' }).waitFor();

  // Retry with edited input: invalid JSON is refused in place, valid JSON
  // starts attempt 2 with the new input (the agent fails again).
  await page.fill('#retry-input', '{"oops"');
  await page.click('#retry-form button[type=submit]');
  assert.match(await page.locator('#retry-error').textContent(), /Not valid JSON/);
  assert.equal((await api(server, 'GET', `/runs/${id}`)).attempt, 1, 'nothing was sent');
  await page.fill('#retry-input', '{"second": true}');
  await page.click('#retry-form button[type=submit]');
  await page.waitForFunction(
    async (runId) => (await (await fetch(`/api/v1/runs/${runId}`)).json()).attempt === 2,
    id,
  );
  await page.locator('#run-status .badge', { hasText: 'FAILED' }).waitFor();
  const retried = await api(server, 'GET', `/runs/${id}`);
  assert.deepEqual(retried.input, { second: true });
  assert.deepEqual(page.jsErrors, []);
  await page.close();
});

test('starting a run with invalid JSON shows the error and sends nothing; valid JSON starts it', async () => {
  const page = await newPage();
  const posts = [];
  page.on('request', (r) => {
    if (r.method() === 'POST') posts.push(r.url());
  });
  await page.goto(`${server.base}/#/workflows/summarize`);
  await page.locator('#dag, svg.dag').first().waitFor();
  await page.fill('#run-input', '{"topic": ');
  await page.click('#start-run');
  const error = page.locator('#input-error');
  await error.waitFor();
  assert.match(await error.textContent(), /Not valid JSON/);
  assert.equal(await page.getAttribute('#run-input', 'aria-invalid'), 'true');
  await page.fill('#run-input', '[1, 2]');
  await page.click('#start-run');
  assert.match(await error.textContent(), /must be a JSON object/);
  assert.deepEqual(posts, [], 'nothing was sent');
  await page.screenshot({ path: join(OUT, 'workflow-page.png'), fullPage: true });

  await page.fill('#run-input', '{"topic": "from the console"}');
  await page.click('#start-run');
  await page.waitForURL(/#\/runs\/run-/);
  await page.locator('#run-status .badge', { hasText: 'COMPLETED' }).waitFor();
  assert.equal(posts.length, 1);
  const runId = decodeURIComponent(page.url().split('#/runs/')[1]);
  assert.equal((await api(server, 'GET', `/runs/${runId}`)).input.topic, 'from the console');
  assert.deepEqual(page.jsErrors, []);
  await page.close();
});

test('the workflows and agents pages list what the server has', async () => {
  const page = await newPage();
  await page.goto(`${server.base}/#/workflows`);
  await page.locator('a', { hasText: 'research' }).waitFor();
  await page.click('a:has-text("research")');
  await page.locator('svg.dag [data-step="report"]').waitFor();
  assert.match(await page.locator('pre.plan').textContent(), /"for_each"/);
  await page.locator('.versions a', { hasText: 'version 1' }).waitFor();
  await page.goto(`${server.base}/#/agents`);
  const row = page.locator('tr', { hasText: 'sleep' });
  await row.waitFor();
  assert.match(await row.textContent(), /healthy/);
  assert.deepEqual(page.jsErrors, []);
  await page.close();
});

test('with --auth required the console asks for a key and keeps it for the tab only', async () => {
  const secured = await startServe(['--auth', 'required']);
  try {
    // A key, made the way an operator makes one.
    const made = spawn(BIN, ['apikey', 'create', '--role', 'operator', '--name', 'ui', '--data-dir', secured.dataDir, '--json']);
    let out = '';
    made.stdout.on('data', (d) => (out += d));
    await new Promise((r) => made.on('exit', r));
    const key = JSON.parse(out).key;
    assert.ok(key, out);
    const page = await newPage();
    await page.goto(`${secured.base}/#/runs`);
    const dialog = page.locator('#key-dialog');
    await dialog.waitFor();
    await page.fill('#key-input', key);
    await page.click('#key-form button[type=submit]');
    await page.locator('h1', { hasText: 'Runs' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('agentflow.apiKey')), key);
    assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing kept beyond the session');
    await page.close();
  } finally {
    await secured.stop();
  }
});

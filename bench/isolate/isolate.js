// The V8 side of bench/workers.sh: what a new isolate costs, the way an isolate-per-worker
// platform starts one. Cold start = new isolate + context + compile and run the worker's
// script + handle one request; then private memory per live isolate (each with its context
// and script). Falls back to worker_threads when isolated-vm is not installed.
//
// Usage: node isolate.js [REQUESTS] [LIVE]; prints one JSON object.
'use strict';
const fs = require('fs');

const REQUESTS = Number(process.argv[2] || 500);
const LIVE = Number(process.argv[3] || 100);
const WORKER = `
  function handle(url) {
    const u = new URL(url);
    return { status: 200, headers: { 'content-type': 'text/plain' }, body: 'hello from js: ' + u.pathname + '\\n' };
  }
`;

function privateKib() {
  const text = fs.readFileSync('/proc/self/smaps_rollup', 'utf8');
  let kib = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('Private_Clean:') || line.startsWith('Private_Dirty:')) {
      kib += Number(line.split(/\s+/)[1]);
    }
  }
  return kib;
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

function withIsolatedVm(ivm) {
  // isolated-vm's isolates have no URL: give the script a minimal one, as a worker runtime
  // would give its globals.
  const prelude = `globalThis.URL = class { constructor(u) { const m = /^[a-z]+:\\/\\/[^/]+(\\/[^?]*)/.exec(u); this.pathname = m ? m[1] : '/'; } };`;
  const start = (i) => {
    const isolate = new ivm.Isolate({ memoryLimit: 128 });
    const context = isolate.createContextSync();
    isolate.compileScriptSync(prelude + WORKER).runSync(context);
    const handle = context.global.getSync('handle', { reference: true });
    const resp = handle.applySync(undefined, ['http://bench.test/' + i], { result: { copy: true } });
    if (resp.status !== 200) throw new Error('bad response');
    return { isolate, context, handle };
  };
  for (let i = 0; i < 20; i++) start(i).isolate.dispose();
  const times = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t = process.hrtime.bigint();
    const s = start(i);
    times.push(Number(process.hrtime.bigint() - t) / 1e3);
    s.isolate.dispose();
  }
  global.gc && global.gc();
  const before = privateKib();
  const live = [];
  for (let i = 0; i < LIVE; i++) live.push(start(i));
  const during = privateKib();
  live.forEach((s) => s.isolate.dispose());
  return { times, perInstance: (during - before) / LIVE, kind: 'isolated-vm' };
}

async function withWorkerThreads() {
  const { Worker } = require('worker_threads');
  const src = WORKER + `
    const { parentPort } = require('worker_threads');
    parentPort.on('message', (url) => parentPort.postMessage(handle(url)));`;
  const start = (i) => new Promise((resolve, reject) => {
    const w = new Worker(src, { eval: true });
    w.once('message', (resp) => resolve(w));
    w.once('error', reject);
    w.postMessage('http://bench.test/' + i);
  });
  for (let i = 0; i < 5; i++) await (await start(i)).terminate();
  const times = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t = process.hrtime.bigint();
    const w = await start(i);
    times.push(Number(process.hrtime.bigint() - t) / 1e3);
    await w.terminate();
  }
  const before = privateKib();
  const live = [];
  for (let i = 0; i < LIVE; i++) live.push(await start(i));
  const during = privateKib();
  await Promise.all(live.map((w) => w.terminate()));
  return { times, perInstance: (during - before) / LIVE, kind: 'worker_threads' };
}

(async () => {
  let ivm = null;
  try {
    ivm = require('isolated-vm');
  } catch (e) {
    console.error('isolated-vm not available (' + e.message + '): using worker_threads');
  }
  const r = ivm ? withIsolatedVm(ivm) : await withWorkerThreads();
  r.times.sort((a, b) => a - b);
  console.log(JSON.stringify({
    kind: r.kind,
    median_us: Number(percentile(r.times, 0.5).toFixed(1)),
    p99_us: Number(percentile(r.times, 0.99).toFixed(1)),
    private_kib_per_instance: Number(r.perInstance.toFixed(1)),
    requests: REQUESTS,
    live: LIVE,
  }));
})();

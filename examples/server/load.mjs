#!/usr/bin/env node
// npm run example:server:load — a bounded loopback load test of the example server.
//
// Starts `server.mjs` as a child process on 127.0.0.1 (any free port), then runs alternating
// phases of DURATION seconds each: "clean" (valid POST /search requests only, CONNECTIONS
// connections) and "mixed" (the same valid traffic plus, concurrently, a rate-limited stream of
// malformed and oversized requests). Reports QPS, p50/p99 latency of the valid requests, the max
// event-loop delay inside the server per phase, and the status codes of the bad requests; checks
// that valid requests never failed, no bad request got a 5xx, the server stayed up, and the median
// p99 of the mixed phases is within 10 % of the clean phases'. Stops the server at the end.
// Each client (valid traffic, bad traffic) is its own process (traffic.mjs).
// Environment: DURATION (5 s), ROUNDS (2), CONNECTIONS (8), BAD_RATE (10 req/s), ITEMS, DIM, K (10),
// BATCH (1), OUT (optional JSON output path).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { syntheticBenchmark } from 'dbnorm';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = (n, d) => (process.env[n] === undefined ? d : Number(process.env[n]));
const DURATION = env('DURATION', 5);
const ROUNDS = env('ROUNDS', 2);
const CONNECTIONS = env('CONNECTIONS', 8);
const BAD_RATE = env('BAD_RATE', 10);
const ITEMS = env('ITEMS', 20000);
const DIM = env('DIM', 128);
const K = env('K', 10);
const BATCH = env('BATCH', 1);

function startServer() {
  const child = spawn(process.execPath, [path.join(here, 'server.mjs')], {
    env: { ...process.env, PORT: '0', ITEMS: String(ITEMS), DIM: String(DIM) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('server did not start within 300 s')), 300_000);
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /listening (http:\/\/127\.0\.0\.1:\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1] });
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited early (${code})`)));
  });
}

function validBodies() {
  const { queries } = syntheticBenchmark({ seed: 11, dim: DIM, gallery: 500, queryBank: 10, galleryBank: 10 });
  const bodies = [];
  for (let i = 0; i + BATCH <= Math.min(queries.rows, 400); i += BATCH) {
    const rows = Array.from({ length: BATCH }, (_, r) => Array.from(queries.data.subarray((i + r) * DIM, (i + r + 1) * DIM)));
    bodies.push(JSON.stringify(BATCH === 1 ? { vector: rows[0], k: K } : { vectors: rows, k: K }));
  }
  return bodies;
}

function badBodies() {
  const v = Array.from({ length: DIM }, (_, t) => Math.sin(t + 1));
  return [
    { name: 'wrong dimension', body: JSON.stringify({ vector: v.slice(1), k: K }) },
    { name: 'non-finite (1e999)', body: JSON.stringify({ vector: v, k: K }).replace(/^\{"vector":\[[^,]+/, '{"vector":[1e999') },
    { name: 'k too large', body: JSON.stringify({ vector: v, k: 100000 }) },
    { name: 'batch too large', body: JSON.stringify({ vectors: Array.from({ length: 100 }, () => v), k: K }) },
    { name: 'zero vector (cosine)', body: JSON.stringify({ vector: v.map(() => 0), k: K }) },
    { name: 'malformed JSON', body: '{"vector": [1, 2,' },
    { name: 'wrong types', body: JSON.stringify({ vector: v.map(String), k: 'ten' }) },
    { name: 'oversized body (2 MiB)', body: JSON.stringify({ vector: v, k: K, pad: 'x'.repeat(2 << 20) }) },
  ];
}

/** Runs one autocannon client in a child process (traffic.mjs); resolves with its summary. */
function client(job) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(here, 'traffic.mjs')], { stdio: ['pipe', 'pipe', 'inherit'] });
    child.stdin.end(JSON.stringify(job));
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`traffic client exited with ${code}`))));
  });
}

async function phase(url, mixed, valid, bad) {
  // Both clients start at the same instant, after their processes have started (in both phases).
  const startAt = Date.now() + 2000;
  const good = client({ url, connections: CONNECTIONS, duration: DURATION, startAt, bodies: valid });
  const noise = mixed ? client({ url, connections: 2, duration: DURATION, overallRate: BAD_RATE, startAt, bodies: bad.map((b) => b.body) }) : Promise.resolve(null);
  await new Promise((r) => setTimeout(r, Math.max(0, startAt - Date.now())));
  await fetch(`${url}/stats`); // reset the event-loop histogram as the clients start
  const [g, n] = await Promise.all([good, noise]);
  const stats = await (await fetch(`${url}/stats`)).json();
  return {
    phase: mixed ? 'mixed' : 'clean',
    qps: g.qps,
    requests: g.requests,
    p50: g.p50,
    p99: g.p99,
    non2xx: g.non2xx,
    errors: g.errors,
    maxEventLoopDelayMs: stats.maxEventLoopDelayMs,
    bad: n ? { sent: n.requests, statuses: n.statuses, errors: n.errors } : null,
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

const { child, url } = await startServer();
let failed = false;
try {
  const bad = badBodies();
  // Each bad request alone: the status and error code it gets.
  const codes = [];
  for (const b of bad) {
    const r = await fetch(`${url}/search`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: b.body });
    const j = await r.json().catch(() => ({}));
    codes.push({ request: b.name, status: r.status, code: j.error?.code });
  }
  console.table(codes);
  const valid = validBodies();
  await client({ url, connections: CONNECTIONS, duration: 1, bodies: valid }); // warm-up
  const phases = [];
  for (let r = 0; r < ROUNDS; r++) for (const mixed of [false, true]) phases.push(await phase(url, mixed, valid, bad));
  console.table(phases.map((p) => ({ ...p, bad: p.bad ? JSON.stringify(p.bad.statuses) : '' })));
  const health = await fetch(`${url}/healthz`).then((r) => r.status);
  const clean = phases.filter((p) => p.phase === 'clean');
  const mixed = phases.filter((p) => p.phase === 'mixed');
  const p99Ratio = median(mixed.map((p) => p.p99)) / median(clean.map((p) => p.p99));
  const checks = {
    'every status as expected for bad requests (4xx, coded)': codes.every((c) => c.status >= 400 && c.status < 500 && typeof c.code === 'string'),
    'no valid request failed': phases.every((p) => p.non2xx === 0 && p.errors === 0),
    'no 5xx for bad requests': mixed.every((p) => Object.keys(p.bad.statuses).every((s) => Number(s) < 500)),
    'server alive after the run (GET /healthz 200)': health === 200,
    [`p99 mixed / clean = ${p99Ratio.toFixed(3)} ≤ 1.10`]: p99Ratio <= 1.1,
  };
  for (const [what, ok] of Object.entries(checks)) {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
    failed ||= !ok;
  }
  const out = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, loadavg: os.loadavg(), items: ITEMS, dim: DIM, k: K, batch: BATCH, connections: CONNECTIONS, durationS: DURATION, badRate: BAD_RATE, codes, phases, p99Ratio, checks };
  if (process.env.OUT) fs.writeFileSync(process.env.OUT, JSON.stringify(out, null, 2));
} finally {
  child.kill('SIGTERM');
  await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
}
process.exit(failed ? 1 : 0);

// Cost of "async calls own their input" (issue 9): copying 250 MB of input on the main thread,
// at once versus in OWN_CHUNK pieces (one per event-loop turn), with the event-loop delay seen by
// other work meanwhile. Run: node benchmark/async-copy.mjs [MB]. Figures are ratios from one run.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { cpus } from 'node:os';

const { owned, OWN_CHUNK } = await import('../dist/matrix.js');
const mb = Number(process.argv[2] ?? 250);
const n = Math.floor((mb * 1024 * 1024) / 4);
const src = new Float32Array(n);
for (let i = 0; i < n; i += 1024) src[i] = i;

function once() {
  const t = performance.now();
  const d = new Float32Array(n);
  d.set(src);
  return performance.now() - t;
}

async function chunked() {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  // a 1 ms ticker stands in for other requests; its worst gap is the longest event-loop block
  let last = performance.now();
  let worst = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 1);
  const t = performance.now();
  await owned(src, 'bench');
  const total = performance.now() - t;
  clearInterval(tick);
  h.disable();
  return { total, maxDelayMs: h.max / 1e6, worstTickGapMs: worst };
}

/** Time of one chunk's copy (the intrinsic event-loop block), median and 90th percentile. */
function perChunk() {
  const d = new Float32Array(n);
  const t = [];
  for (let off = 0; off < n; off += OWN_CHUNK) {
    const t0 = performance.now();
    d.set(src.subarray(off, Math.min(n, off + OWN_CHUNK)), off);
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return { median: t[t.length >> 1], p90: t[Math.floor(t.length * 0.9)] };
}

once(); // warm up (page faults of the first allocation)
const single = [once(), once(), once()].sort((a, b) => a - b)[1];
const c = [await chunked(), await chunked(), await chunked()].sort((a, b) => a.total - b.total)[1];
const pc = perChunk();
console.log(JSON.stringify({
  chunkCopyMedianMs: +pc.median.toFixed(2), chunkCopyP90Ms: +pc.p90.toFixed(2),
  cpu: cpus()[0]?.model, cores: cpus().length, mb, chunkMB: (OWN_CHUNK * 4) / 2 ** 20,
  singleCopyMs: +single.toFixed(1), chunkedTotalMs: +c.total.toFixed(1),
  chunkedMaxEventLoopDelayMs: +c.maxDelayMs.toFixed(1), chunkedWorstTickGapMs: +c.worstTickGapMs.toFixed(1),
}));

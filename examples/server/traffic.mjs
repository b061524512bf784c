// One autocannon client in its own process (so that two concurrent clients do not share an event
// loop and distort each other's latencies). Input: a JSON job on stdin
// ({ url, duration, connections, overallRate?, startAt?, bodies: string[] }); output: autocannon's summary
// as one JSON line on stdout. Used by load.mjs.
import autocannon from 'autocannon';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const job = JSON.parse(input);
// Start together with the other client at job.startAt (epoch ms): process start-up is not measured.
if (job.startAt) await new Promise((r) => setTimeout(r, Math.max(0, job.startAt - Date.now())));
let i = 0;
const res = await autocannon({
  url: job.url,
  connections: job.connections,
  duration: job.duration,
  ...(job.overallRate ? { overallRate: job.overallRate } : {}),
  requests: [{ method: 'POST', path: '/search', headers: { 'content-type': 'application/json' }, setupRequest: (r) => ({ ...r, body: job.bodies[i++ % job.bodies.length] }) }],
});
const statuses = {};
for (const [k, v] of Object.entries(res.statusCodeStats ?? {})) statuses[k] = v.count;
process.stdout.write(JSON.stringify({ qps: res.requests.average, requests: res.requests.total, p50: res.latency.p50, p99: res.latency.p99, non2xx: res.non2xx, errors: res.errors + res.timeouts, statuses }) + '\n');

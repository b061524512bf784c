// One shard process: runs a `dbnorm` CLI command in this process and prints one JSON line with its
// wall time and peak resident set size (what a batch runner's job would report).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { main } = require('../../dist/cli.js');

const t0 = performance.now();
const code = await main(process.argv.slice(2));
const wallS = (performance.now() - t0) / 1000;
// resourceUsage().maxRSS is in kilobytes.
process.stdout.write(JSON.stringify({ code, wallS, peakRssMB: process.resourceUsage().maxRSS / 1024 }) + '\n');
process.exitCode = code;

// Helpers shared by the benchmark's child processes: memory accounting, timing and statistics.

import fs from 'node:fs';

/** { rss, hwm } of this process in bytes, from /proc/self/status (Linux); nulls elsewhere. */
export function memory() {
  try {
    const s = fs.readFileSync('/proc/self/status', 'utf8');
    const kb = (k) => {
      const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s);
      return m ? Number(m[1]) * 1024 : null;
    };
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    const rss = process.memoryUsage.rss();
    return { rss, hwm: process.resourceUsage().maxRSS * 1024 };
  }
}

/**
 * Resets the kernel's peak-RSS counter (VmHWM) to the current RSS, so that a later `memory().hwm`
 * is the peak of what ran in between. Returns false where that is not possible.
 */
export function resetPeak() {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

export function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Percentile p in [0, 100] by linear interpolation between order statistics. */
export function percentile(xs, p) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export const now = () => performance.now() / 1000;

/** Runs `fn` (sync or async) `reps` times, returning the wall times in seconds and the last result. */
export async function timeReps(fn, reps) {
  const seconds = [];
  let result;
  for (let r = 0; r < reps; r++) {
    const t0 = now();
    result = await fn();
    seconds.push(now() - t0);
  }
  return { seconds, result };
}

/** Parses the task of a child process (JSON in argv[2]) and prints its result as one JSON line. */
export async function childMain(handlers) {
  const task = JSON.parse(process.argv[2]);
  const handler = handlers[task.task];
  if (!handler) throw new Error(`unknown task ${task.task}`);
  const out = await handler(task);
  const mem = memory();
  process.stdout.write(JSON.stringify({ task: task.task, ...out, peakRssBytes: mem.hwm, pid: process.pid }) + '\n');
}

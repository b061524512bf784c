import { DbnormError, awaitNative } from './errors.js';
import { native } from './native.js';

/** Progress of a long operation: `done` of `total` units (bank rows, queries) in `phase`. */
export interface Progress {
  /** What is being worked on, e.g. `"fit:queryBank"`, `"fit:galleryBank"`, `"search"`. */
  phase: string;
  /** Units finished. */
  done: number;
  /** Units in this phase. */
  total: number;
}

/** Options every asynchronous heavy operation accepts. */
export interface RunOptions {
  /** Aborting stops the native work at its next block boundary (within ~100 ms) and rejects with an `AbortError` (`code: 'ERR_ABORTED'`). */
  signal?: AbortSignal;
  /** Called at most every ~50 ms while the work runs, and once at the end; never keeps the process alive on its own. */
  onProgress?: (p: Progress) => void;
}

const PROGRESS_MS = 50;

/** @internal Runs a native async task wired to `signal` and `onProgress`. */
export async function runJob<T>(opts: RunOptions | undefined, start: (job: InstanceType<typeof native.NativeJob>) => Promise<T>): Promise<T> {
  const signal = opts?.signal;
  if (signal?.aborted) throw new DbnormError('ERR_ABORTED', 'the operation was aborted before it started');
  const job = new native.NativeJob();
  const onAbort = (): void => job.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let last = '';
  const report = (final: boolean): void => {
    if (!opts?.onProgress) return;
    const p = job.progress();
    if (p.total === 0) return;
    const key = `${p.phase}:${p.done}:${p.total}`;
    if (key === last && !final) return;
    last = key;
    opts.onProgress({ phase: p.phase, done: p.done, total: p.total });
  };
  const timer = opts?.onProgress ? setInterval(() => report(false), PROGRESS_MS) : undefined;
  timer?.unref();
  try {
    const out = await awaitNative(start(job));
    report(true);
    return out;
  } catch (e) {
    if (signal?.aborted && !(e instanceof DbnormError && e.code === 'ERR_ABORTED')) {
      throw new DbnormError('ERR_ABORTED', 'the operation was aborted');
    }
    throw e;
  } finally {
    if (timer) clearInterval(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

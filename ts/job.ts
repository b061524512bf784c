import { DbnormError, awaitNative } from './errors.js';
import { native } from './native.js';
import { callback, signal as checkSignal } from './validate.js';

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
  /**
   * Called at most every ~50 ms while the work runs, and once at the end; never keeps the process
   * alive on its own. If it throws, progress reporting stops and the operation rejects with that
   * error (wrapped as `ERR_PARAM`, the original in `cause`) once the native work has stopped: the
   * work is aborted at its next block boundary. It never escapes as an uncaught exception.
   */
  onProgress?: (p: Progress) => void;
}

const PROGRESS_MS = 50;

/** @internal Validates {@link RunOptions} values (types only; the keys are checked by the caller). */
export function checkRun(o: RunOptions | undefined): RunOptions {
  return { signal: checkSignal(o?.signal), onProgress: callback<RunOptions['onProgress']>('onProgress', o?.onProgress) };
}

/** @internal The error an `onProgress` callback threw, as the operation's rejection. */
export function progressError(e: unknown): DbnormError {
  const err = new DbnormError('ERR_PARAM', `onProgress threw: ${e instanceof Error ? e.message : String(e)}`);
  (err as { cause?: unknown }).cause = e;
  return err;
}

/**
 * @internal Runs a native async task wired to `signal` and `onProgress`.
 */
export async function runJob<T>(opts: RunOptions | undefined, start: (job: InstanceType<typeof native.NativeJob>) => Promise<T>): Promise<T> {
  const { signal, onProgress } = checkRun(opts);
  if (signal?.aborted) throw new DbnormError('ERR_ABORTED', 'the operation was aborted before it started');
  const job = new native.NativeJob();
  const onAbort = (): void => job.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let last = '';
  let thrown: { e: unknown } | undefined;
  const report = (final: boolean): void => {
    if (!onProgress || thrown) return;
    const p = job.progress();
    if (p.total === 0) return;
    const key = `${p.phase}:${p.done}:${p.total}`;
    if (key === last && !final) return;
    last = key;
    try {
      onProgress({ phase: p.phase, done: p.done, total: p.total });
    } catch (e) {
      // contract: the callback's exception rejects the operation; the native work is stopped
      thrown = { e };
      job.abort();
    }
  };
  const timer = onProgress ? setInterval(() => report(false), PROGRESS_MS) : undefined;
  timer?.unref();
  try {
    let out: T;
    try {
      out = await awaitNative(start(job));
    } catch (e) {
      if (thrown) throw progressError(thrown.e);
      throw e;
    }
    report(true);
    if (thrown) throw progressError(thrown.e);
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

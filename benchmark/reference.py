#!/usr/bin/env python3
"""numpy reference for dbnorm's hubness-reduction methods.

This is the straightforward, vectorised way a researcher writes the methods:
a float32 matmul for every similarity matrix, the whole bank x gallery matrix
materialised, a max-shifted log-sum-exp over the bank axis in float64 (written
as one expression by default; --lse inplace avoids the float64 temporaries),
and argpartition for top-k. It follows the same method semantics as the library
(log-domain scores, activation sets from each bank row's top-k over the
gallery, gates on the raw top-1, ties broken by score descending then index
ascending) and serves as an independent implementation to compare against.

Methods: none, is, dis, dual-is, dual-dis, csls, nnn.

Input (--input DIR): float32 arrays as .npy, or raw little-endian float32
files (NAME.f32 or NAME.bin, with --dim for the row width):
  embeddings mode:   queries (nq x d), gallery (ng x d),
                     query_bank (mq x d), gallery_bank (mg x d)
  similarities mode: similarities (nq x ng), query_bank_sims (mq x ng),
                     gallery_bank_sims (mg x ng)   (raw files need --gallery-count)

Output: ONE JSON line on stdout with the timings of each phase (median of
--repeats runs after one warm-up), peak RSS, numpy version and BLAS info; the
result arrays go to --out (topk_indices.npy, topk_scores.npy, lq.npy, lg.npy,
active_query.npy, active_gallery.npy, column_mean.npy, occurrence.npy, and with
--save-matrices also similarity.npy and scores.npy).

  python benchmark/reference.py --input DIR --out DIR --method dual-dis \
      --beta-query 20 --beta-gallery 1 --task all --repeats 5
  python benchmark/reference.py --input DIR --out DIR --task e2e --method is,dual-dis ...
  python benchmark/reference.py --input DIR --task lse --matrix gallery_bank_sims --beta-query 20
  python benchmark/reference.py --probe-gemm --m 1000 --n 1000 --d 512
  python benchmark/reference.py --probe-bandwidth --input DIR

Tasks: similarity / fit / search / all (phases timed separately), e2e (fit + similarity + search +
evaluation, per method), query (after one untimed fit: similarity + normalisation + top-k), lse (the log-sum-exp pass alone over a materialised matrix), online
(latency of searching batches of queries). Timings are lists of every timed run after a warm-up;
--measure-memory adds the fit's peak RSS above the RSS before it (the extra memory beyond inputs).
"""

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np

try:
    import threadpoolctl
except ImportError:  # the JSON then reports that the BLAS could not be identified
    threadpoolctl = None

METHODS = ("none", "is", "dis", "dual-is", "dual-dis", "csls", "nnn")
NEEDS_QUERY_BANK = {"is", "dis", "dual-is", "dual-dis", "csls", "nnn"}
NEEDS_GALLERY_BANK = {"dual-is", "dual-dis"}
NEEDS_BETA_QUERY = {"is", "dis", "dual-is", "dual-dis"}
NEEDS_BETA_GALLERY = {"dual-is", "dual-dis"}
NEEDS_ACTIVATION = {"dis", "dual-dis"}


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------

def normalize_rows(x):
    """Unit-normalise the rows of a float32 matrix (returns a new array)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a zero vector has no cosine similarity")
    return (x / norms).astype(np.float32, copy=False)


def prepare(x, metric):
    x = np.asarray(x, dtype=np.float32)
    return normalize_rows(x) if metric == "cosine" else x


def similarity(a, b, metric="cosine"):
    """a (n x d) . b (m x d)^T in float32; cosine normalises the rows first."""
    return prepare(a, metric) @ prepare(b, metric).T


def topk(x, k):
    """Indices of the k largest entries of each row, ordered by value
    descending and index ascending on ties (k is clamped to the row length)."""
    n = x.shape[1]
    k = min(k, n)
    if k == n:
        return np.argsort(-x, axis=1, kind="stable")
    if k == 1:
        return np.argmax(x, axis=1)[:, None]  # argmax returns the lowest index on ties
    part = np.argpartition(-x, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(x, part, axis=1)
    # argpartition may pick any of several items tied at the k-th value; rows
    # with such a boundary tie are redone with a stable full sort.
    kth = vals.min(axis=1)
    ambiguous = np.nonzero((x >= kth[:, None]).sum(axis=1) > k)[0]
    for r in ambiguous:
        part[r] = np.argsort(-x[r], kind="stable")[:k]
        vals[r] = x[r, part[r]]
    order = np.lexsort((part, -vals), axis=-1)
    return np.take_along_axis(part, order, axis=1)


LSE_STYLE = "straightforward"


def log_sum_exp_columns(p, beta):
    """L(j) = log sum_b exp(beta * P[b, j]), max-shifted, in float64.

    "straightforward" (the default, and the reference the issue calibrates against) writes it as
    one expression, so numpy allocates a float64 temporary of the whole bank matrix at each step;
    "inplace" (--lse inplace) makes one float64 copy and works in place: the same numbers, less
    memory traffic, as a careful numpy user would write it."""
    if LSE_STYLE == "inplace":
        x = p.astype(np.float64)
        x *= beta
        m = x.max(axis=0)
        x -= m
        np.exp(x, out=x)
        return m + np.log(x.sum(axis=0))
    x = beta * p.astype(np.float64)
    m = x.max(axis=0)
    return m + np.log(np.exp(x - m).sum(axis=0))


def activation_set(p, k):
    """Union over bank rows of each row's top-k gallery items, as a bool mask."""
    active = np.zeros(p.shape[1], dtype=bool)
    active[topk(p, k).ravel()] = True
    return active


def mean_top_k_columns(p, k):
    """Mean of the k largest entries of each column (k clamped to the rows)."""
    k = min(k, p.shape[0])
    top = np.partition(p, p.shape[0] - k, axis=0)[p.shape[0] - k:]
    return top.astype(np.float64).mean(axis=0)


def mean_top_k_rows(s, k):
    k = min(k, s.shape[1])
    top = np.partition(s, s.shape[1] - k, axis=1)[:, s.shape[1] - k:]
    return top.astype(np.float64).mean(axis=1)


# --------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------

def check_params(method, params, mq, mg):
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    if method in NEEDS_QUERY_BANK and mq == 0:
        raise ValueError(f"{method} needs a non-empty query bank")
    if method in NEEDS_GALLERY_BANK and mg == 0:
        raise ValueError(f"{method} needs a non-empty gallery bank")
    for name, needed in (("beta_query", NEEDS_BETA_QUERY), ("beta_gallery", NEEDS_BETA_GALLERY)):
        if method in needed:
            value = params.get(name)
            if value is None:
                raise ValueError(f"{method} needs --{name.replace('_', '-')} (β depends on the similarity scale)")
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0")
    for name in ("k", "csls_k", "nnn_k"):
        if params[name] < 1:
            raise ValueError(f"{name} must be at least 1")
    if not np.isfinite(params["nnn_alpha"]) or params["nnn_alpha"] < 0:
        raise ValueError("nnn_alpha must be a finite number >= 0")


def fit_from_bank_sims(method, pq, pg, params):
    """Per-gallery statistics from the materialised bank x gallery matrices."""
    fitted = {"method": method}
    if method in NEEDS_BETA_QUERY:
        fitted["lq"] = log_sum_exp_columns(pq, params["beta_query"])
    if method in NEEDS_BETA_GALLERY:
        fitted["lg"] = log_sum_exp_columns(pg, params["beta_gallery"])
    if method in NEEDS_ACTIVATION:
        fitted["active_query"] = activation_set(pq, params["k"])
    if method == "dual-dis":
        fitted["active_gallery"] = activation_set(pg, params["k"])
    if method == "csls":
        fitted["column_mean"] = mean_top_k_columns(pq, params["csls_k"])
    if method == "nnn":
        fitted["column_mean"] = mean_top_k_columns(pq, params["nnn_k"])
    return fitted


def fit_embeddings(method, gallery, query_bank, gallery_bank, params, metric):
    g = prepare(gallery, metric)
    pq = prepare(query_bank, metric) @ g.T if method in NEEDS_QUERY_BANK else None
    pg = prepare(gallery_bank, metric) @ g.T if method in NEEDS_GALLERY_BANK else None
    return fit_from_bank_sims(method, pq, pg, params)


def normalized_scores(method, fitted, s, params):
    """Normalised scores (float64) for query x gallery similarities s."""
    s64 = s.astype(np.float64)
    if method == "none":
        return s64
    if method == "is":
        return params["beta_query"] * s64 - fitted["lq"]
    if method == "dis":
        gate = fitted["active_query"][s.argmax(axis=1)]
        return params["beta_query"] * s64 - gate[:, None] * fitted["lq"]
    beta = (params["beta_query"] or 0) + (params["beta_gallery"] or 0)
    if method == "dual-is":
        return beta * s64 - fitted["lq"] - fitted["lg"]
    if method == "dual-dis":
        top = s.argmax(axis=1)
        gq = fitted["active_query"][top]
        gg = fitted["active_gallery"][top]
        return beta * s64 - gq[:, None] * fitted["lq"] - gg[:, None] * fitted["lg"]
    if method == "csls":
        r_t = mean_top_k_rows(s, params["csls_k"])
        return 2 * s64 - r_t[:, None] - fitted["column_mean"]
    if method == "nnn":
        return s64 - params["nnn_alpha"] * fitted["column_mean"]
    raise ValueError(f"unknown method {method!r}")


def rerank_scores(method, fitted, s, cand, params):
    """Normalised scores (float64) of candidate items `cand` (b x c ids) with similarities s (b x c);
    gates and CSLS's r_T are taken over the candidates."""
    s64 = s.astype(np.float64)
    top = np.take_along_axis(cand, s.argmax(axis=1)[:, None], axis=1)[:, 0]
    beta = (params["beta_query"] or 0) + (params["beta_gallery"] or 0)
    if method == "none":
        return s64
    if method == "is":
        return params["beta_query"] * s64 - fitted["lq"][cand]
    if method == "dis":
        return params["beta_query"] * s64 - fitted["active_query"][top][:, None] * fitted["lq"][cand]
    if method == "dual-is":
        return beta * s64 - fitted["lq"][cand] - fitted["lg"][cand]
    if method == "dual-dis":
        gq = fitted["active_query"][top][:, None]
        gg = fitted["active_gallery"][top][:, None]
        return beta * s64 - gq * fitted["lq"][cand] - gg * fitted["lg"][cand]
    if method == "csls":
        return 2 * s64 - mean_top_k_rows(s, params["csls_k"])[:, None] - fitted["column_mean"][cand]
    if method == "nnn":
        return s64 - params["nnn_alpha"] * fitted["column_mean"][cand]
    raise ValueError(f"unknown method {method!r}")


def search(method, fitted, s, params, k):
    scores = normalized_scores(method, fitted, s, params)
    idx = topk(scores, k)
    return idx, np.take_along_axis(scores, idx, axis=1), scores


# --------------------------------------------------------------------------
# Evaluation and hubness
# --------------------------------------------------------------------------

def evaluate_t2v(scores, captions_per_item):
    """R@1/5/10, MdR, MnR with averaged ties; caption i belongs to item i // c."""
    nq, _ = scores.shape
    gt = np.arange(nq) // captions_per_item
    v = scores[np.arange(nq), gt][:, None]
    above = (scores > v).sum(axis=1)
    tied = (scores == v).sum(axis=1) - 1
    r = above + tied / 2.0
    return {
        "R1": float(100 * np.mean(r < 1)),
        "R5": float(100 * np.mean(r < 5)),
        "R10": float(100 * np.mean(r < 10)),
        "MdR": float(np.median(r) + 1),
        "MnR": float(np.mean(r) + 1),
    }


def hubness(scores, k=10):
    nq, ng = scores.shape
    k = min(k, ng)
    occurrence = np.bincount(topk(scores, k).ravel(), minlength=ng)
    if np.all(occurrence == occurrence[0]):
        return occurrence, float("nan")
    d = occurrence - k * nq / ng
    m2 = np.mean(d ** 2)
    m3 = np.mean(d ** 3)
    return occurrence, float(m3 / m2 ** 1.5)


# --------------------------------------------------------------------------
# I/O and timing
# --------------------------------------------------------------------------

def load_array(directory, name, cols=None, required=True):
    path = os.path.join(directory, name + ".npy")
    if os.path.exists(path):
        arr = np.load(path)
        if arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        return arr
    for ext in (".f32", ".bin"):
        path = os.path.join(directory, name + ext)
        if os.path.exists(path):
            if cols is None:
                raise ValueError(f"{path} is a raw file: give its row width (--dim or --gallery-count)")
            arr = np.fromfile(path, dtype="<f4")
            if arr.size % cols:
                raise ValueError(f"{path} has {arr.size} values, not a multiple of {cols}")
            return arr.reshape(-1, cols).astype(np.float32, copy=False)
    if required:
        raise FileNotFoundError(f"no {name}.npy / .f32 / .bin in {directory}")
    return None


def json_line(obj):
    """One JSON line; NaN and infinities (e.g. an undefined skewness) become null."""
    def clean(x):
        if isinstance(x, float) and not np.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x
    return json.dumps(clean(obj), allow_nan=False)


def timed_all(fn, repeats, warmup=None):
    """Wall times of `repeats` runs after one warm-up run (`warmup`, default `fn` itself);
    returns (list of seconds, last result)."""
    result = (warmup or fn)()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def timed(fn, repeats, warmup=None):
    """Median wall time of `repeats` runs after one warm-up; returns (seconds, last result)."""
    times, result = timed_all(fn, repeats, warmup)
    return float(np.median(times)), result


def proc_status():
    """(VmRSS, VmHWM) in bytes from /proc/self/status, or (None, None) off Linux."""
    try:
        out = {}
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0]) * 1024
        return out.get("VmRSS"), out.get("VmHWM")
    except OSError:
        return None, None


def reset_peak_rss():
    """Resets the kernel's peak-RSS counter to the current RSS (Linux); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_memory(fn, repeats, warmup=None):
    """Like timed_all, but also reports the peak RSS of the timed runs above the RSS before them
    (after the warm-up), i.e. the extra memory the operation needs beyond its inputs."""
    result = (warmup or fn)()
    result = None
    rss_before, _ = proc_status()
    can_reset = reset_peak_rss()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        if _ < repeats - 1:
            result = None
    _, peak = proc_status()
    mem = {"rss_before_bytes": rss_before, "peak_bytes": peak if can_reset else None,
           "extra_peak_bytes": (peak - rss_before) if can_reset and peak and rss_before else None}
    return times, result, mem


def blas_info():
    if threadpoolctl is None:
        return None
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads", "threading_layer", "prefix")
    return [{key: entry.get(key) for key in keep} for entry in threadpoolctl.threadpool_info()]


def environment_info():
    return {
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "blas": blas_info(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "openblas_l2_size": os.environ.get("OPENBLAS_L2_SIZE"),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def probe_gemm(args):
    rng = np.random.default_rng(args.seed)
    q = rng.standard_normal((args.m, args.d), dtype=np.float32)
    g = rng.standard_normal((args.n, args.d), dtype=np.float32)
    times, _ = timed_all(lambda: q @ g.T, args.repeats)
    seconds = float(np.median(times))
    out = {"probe": "gemm", "m": args.m, "n": args.n, "d": args.d, "repeats": args.repeats,
           "seconds": seconds, "times": times, "gflops": 2.0 * args.m * args.n * args.d / seconds / 1e9,
           "best_gflops": 2.0 * args.m * args.n * args.d / min(times) / 1e9}
    out.update(environment_info())
    print(json_line(out))


def probe_bandwidth(args):
    """Bytes/s reading an array once: numpy's a.sum() (one thread, SIMD pairwise sum) and a BLAS
    matrix-vector product a @ ones (all BLAS threads), over the gallery of --input if given."""
    if args.input:
        a = load_array(args.input, "gallery", args.dim)
    else:
        a = np.random.default_rng(args.seed).standard_normal((args.n, args.d), dtype=np.float32)
    ones = np.ones(a.shape[1], dtype=np.float32)
    nbytes = a.nbytes
    sum_times, _ = timed_all(lambda: a.sum(), args.repeats)
    gemv_times, _ = timed_all(lambda: a @ ones, args.repeats)
    out = {"probe": "bandwidth", "bytes": nbytes, "shape": list(a.shape), "repeats": args.repeats,
           "sum_seconds": float(np.median(sum_times)), "sum_times": sum_times,
           "sum_bytes_per_second": nbytes / float(np.median(sum_times)),
           "gemv_seconds": float(np.median(gemv_times)), "gemv_times": gemv_times,
           "gemv_bytes_per_second": nbytes / float(np.median(gemv_times))}
    out.update(environment_info())
    print(json_line(out))


def warmup_slice(x, rows=2000):
    return None if x is None else x[: min(rows, x.shape[0])]


def run(args):
    methods = args.method.split(",")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r} (expected one of {', '.join(METHODS)})")
    method = methods[0]
    params = {
        "beta_query": args.beta_query, "beta_gallery": args.beta_gallery, "k": args.k,
        "csls_k": args.csls_k, "nnn_k": args.nnn_k, "nnn_alpha": args.nnn_alpha,
    }
    inp = args.input
    if args.task == "lse":
        return run_lse(args)
    has_embeddings = any(
        os.path.exists(os.path.join(inp, "gallery" + ext)) for ext in (".npy", ".f32", ".bin"))
    mode = args.mode if args.mode != "auto" else ("embeddings" if has_embeddings else "similarities")
    any_query_bank = any(m in NEEDS_QUERY_BANK for m in methods)
    any_gallery_bank = any(m in NEEDS_GALLERY_BANK for m in methods)

    if mode == "embeddings":
        queries = load_array(inp, "queries", args.dim)
        gallery = load_array(inp, "gallery", args.dim)
        query_bank = load_array(inp, "query_bank", args.dim, required=any_query_bank)
        gallery_bank = load_array(inp, "gallery_bank", args.dim, required=any_gallery_bank)
        d = gallery.shape[1]
        for name, arr in (("queries", queries), ("query_bank", query_bank), ("gallery_bank", gallery_bank)):
            if arr is not None and arr.shape[1] != d:
                raise ValueError(f"{name} has dimension {arr.shape[1]}, gallery has {d}")
        nq, ng = queries.shape[0], gallery.shape[0]
        mq = 0 if query_bank is None else query_bank.shape[0]
        mg = 0 if gallery_bank is None else gallery_bank.shape[0]
        compute_s = lambda: similarity(queries, gallery, args.metric)
        fit_for = lambda m: (lambda: fit_embeddings(m, gallery, query_bank, gallery_bank, params, args.metric))
        small_fit_for = lambda m: (lambda: fit_embeddings(
            m, gallery, warmup_slice(query_bank), warmup_slice(gallery_bank), params, args.metric))
    else:
        s_given = load_array(inp, "similarities", args.gallery_count)
        ng = s_given.shape[1]
        pq = load_array(inp, "query_bank_sims", ng, required=any_query_bank)
        pg = load_array(inp, "gallery_bank_sims", ng, required=any_gallery_bank)
        d = None
        nq = s_given.shape[0]
        mq = 0 if pq is None else pq.shape[0]
        mg = 0 if pg is None else pg.shape[0]
        compute_s = lambda: s_given
        fit_for = lambda m: (lambda: fit_from_bank_sims(m, pq, pg, params))
        small_fit_for = lambda m: (lambda: fit_from_bank_sims(m, warmup_slice(pq), warmup_slice(pg), params))
    for m in methods:
        check_params(m, params, mq, mg)
    compute_fit = fit_for(method)
    fit_warmup = {"full": None, "small": small_fit_for(method), "none": lambda: None}[args.warmup]

    out = {"method": args.method, "task": args.task, "mode": mode, "metric": args.metric if mode == "embeddings" else None,
           "shapes": {"queries": nq, "gallery": ng, "query_bank": mq, "gallery_bank": mg, "dim": d},
           "params": params, "topk": min(args.topk, ng), "repeats": args.repeats, "warmup": args.warmup,
           "similarity_seconds": None, "fit_seconds": None, "search_seconds": None,
           "gflops": None, "fit_gflops": None}
    os.makedirs(args.out, exist_ok=True)
    save = lambda name, arr: np.save(os.path.join(args.out, name + ".npy"), arr)
    c = args.captions_per_item or (nq // ng if nq % ng == 0 else None)

    if args.task == "e2e":
        # fit + similarity + search (top-k) + evaluation of the full normalised score matrix, per method
        out["methods"] = {}
        for m in methods:
            fit_m = fit_for(m)

            def end_to_end():
                fitted = fit_m()
                s = compute_s()
                idx, _, scores = search(m, fitted, s, params, args.topk)
                metrics = evaluate_t2v(scores, c) if c and nq == c * ng else None
                return idx, metrics

            times, (idx, metrics) = timed_all(end_to_end, args.repeats)
            save(f"topk_{m}", idx.astype(np.uint32))
            out["methods"][m] = {"seconds": times, "metrics": metrics}
        out.update(environment_info())
        print(json_line(out))
        return

    if args.task == "query":
        # fit once (untimed), then time similarity + normalisation + top-k of every query
        fitted = compute_fit()

        def query():
            idx, _, _ = search(method, fitted, compute_s(), params, args.topk)
            return idx

        times, idx = timed_all(query, args.repeats, lambda: search(method, fitted, similarity(queries[:1000], gallery, args.metric), params, args.topk))
        save(f"search_{method}", idx.astype(np.uint32))
        out["times"] = times
        out["seconds_median"] = float(np.median(times))
        out.update(environment_info())
        print(json_line(out))
        return

    if args.task == "online":
        run_online(args, queries, compute_fit(), method, params, out)
        return

    tasks = {"similarity", "fit", "search"} if args.task == "all" else {args.task}
    s = None
    if "similarity" in tasks:
        times, s = timed_all(compute_s, args.repeats)
        out["similarity_times"] = times
        out["similarity_seconds"] = float(np.median(times))
        if d is not None:
            out["gflops"] = 2.0 * nq * ng * d / out["similarity_seconds"] / 1e9
    fitted = None
    if "fit" in tasks:
        if args.measure_memory:
            times, fitted, out["memory"] = measure_memory(compute_fit, args.repeats, fit_warmup)
        else:
            times, fitted = timed_all(compute_fit, args.repeats, fit_warmup)
        out["fit_times"] = times
        out["fit_seconds"] = float(np.median(times))
        if d is not None:
            rows = (mq if method in NEEDS_QUERY_BANK else 0) + (mg if method in NEEDS_GALLERY_BANK else 0)
            if rows:
                out["fit_gflops"] = 2.0 * rows * ng * d / out["fit_seconds"] / 1e9
    if "fit" in tasks or "search" in tasks:
        if fitted is None:
            fitted = compute_fit()
        for key in ("lq", "lg", "active_query", "active_gallery", "column_mean"):
            if key in fitted:
                save(key, fitted[key].astype(np.uint8) if fitted[key].dtype == bool else fitted[key])
    if "search" in tasks:
        if s is None:
            s = compute_s()
        times, (idx, top_scores, scores) = timed_all(
            lambda: search(method, fitted, s, params, args.topk), args.repeats)
        out["search_times"] = times
        out["search_seconds"] = float(np.median(times))
        save("topk_indices", idx.astype(np.uint32))
        save("topk_scores", top_scores.astype(np.float32))
        scores32 = scores.astype(np.float32)
        occurrence, skew = hubness(scores32, args.hubness_k)
        save("occurrence", occurrence.astype(np.uint32))
        out["hubness"] = {"k": min(args.hubness_k, ng), "skewness": skew}
        if c and nq == c * ng:
            out["metrics"] = evaluate_t2v(scores32, c)
        if args.save_matrices:
            save("scores", scores32)
    if s is not None and args.save_matrices:
        save("similarity", s)

    out.update(environment_info())
    print(json_line(out))


def run_lse(args):
    """Times the log-sum-exp pass alone: L(j) = LSE_b(beta * P[b, j]) over a materialised matrix
    (--matrix NAME in --input), i.e. an IS fit in similarities mode."""
    p = load_array(args.input, args.matrix)
    beta = args.beta_query
    if beta is None:
        raise ValueError("--task lse needs --beta-query")
    times, lq = timed_all(lambda: log_sum_exp_columns(p, beta), args.repeats,
                          lambda: log_sum_exp_columns(p[: min(50, p.shape[0])], beta))
    out = {"task": "lse", "shape": list(p.shape), "elements": int(p.size), "times": times,
           "seconds": float(np.median(times)), "ns_per_element": float(np.median(times)) / p.size * 1e9}
    out.update(environment_info())
    print(json_line(out))


def run_online(args, pool, fitted, method, params, out):
    """Latency of searching a batch of b queries (similarity row(s), normalisation, top-k), p50/p95."""
    gallery_n = out["shapes"]["gallery"]
    g = prepare(load_array(args.input, "gallery", args.dim), args.metric)  # normalised once, offline

    def search_batch(q):
        s = prepare(q, args.metric) @ g.T
        idx, _, _ = search(method, fitted, s, params, args.topk)
        return idx

    out["online"] = {}
    for b in [int(x) for x in args.batches.split(",")]:
        reps = max(5, int(args.online_reps * 8 / max(b, 8)))
        starts = [(i * b) % (pool.shape[0] - b + 1) for i in range(reps + 10)]
        for st in starts[:10]:
            search_batch(pool[st:st + b])
        ms = []
        for st in starts[10:]:
            q = pool[st:st + b]
            t0 = time.perf_counter()
            search_batch(q)
            ms.append((time.perf_counter() - t0) * 1000)
        out["online"][str(b)] = {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
                                 "min_ms": float(min(ms)), "reps": reps}
    # rerank of c candidate items per query (what an approximate index returned): similarities to the
    # candidates only, normalised with the fitted per-item statistics, all c sorted best first. As in
    # dbnorm's Normalizer.rerank, the gates (raw top-1) and CSLS's r_T are taken over the candidates.
    c = args.candidates

    def candidates(i, b):
        rows = []
        for r in range(b):
            x = ((i * b + r + 1) * 2654435761) % 2**32
            rows.append((x + np.arange(c, dtype=np.int64) * 40503) % gallery_n)
        return np.stack(rows)

    def rerank_batch(q, cand):
        s = np.einsum("bd,bcd->bc", prepare(q, args.metric), g[cand])
        sc = rerank_scores(method, fitted, s, cand, params)
        order = np.lexsort((cand, -sc), axis=-1)
        return np.take_along_axis(cand, order, axis=1)

    save = lambda name, arr: np.save(os.path.join(args.out, name + ".npy"), arr.astype(np.uint32))
    save("online_search", search_batch(pool[0:8]))
    save("online_rerank", rerank_batch(pool[0:8], candidates(0, 8)))
    out["rerank"] = {}
    for b in [int(x) for x in args.batches.split(",")]:
        reps = max(5, int(args.online_reps * 8 / max(b, 8)))
        starts = [(i * b) % (pool.shape[0] - b + 1) for i in range(reps + 10)]
        for i, st in enumerate(starts[:10]):
            rerank_batch(pool[st:st + b], candidates(i, b))
        ms = []
        for i, st in enumerate(starts[10:]):
            q = pool[st:st + b]
            cand = candidates(i, b)
            t0 = time.perf_counter()
            rerank_batch(q, cand)
            ms.append((time.perf_counter() - t0) * 1000)
        out["rerank"][str(b)] = {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
                                 "min_ms": float(min(ms)), "reps": reps, "candidates": c}
    out["gallery"] = gallery_n
    out.update(environment_info())
    print(json_line(out))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", help="directory with the input arrays")
    p.add_argument("--out", help="directory for the result arrays")
    p.add_argument("--method", default="dual-dis",
                   help=f"one of {', '.join(METHODS)}; --task e2e takes a comma-separated list")
    p.add_argument("--task", choices=("fit", "search", "similarity", "all", "e2e", "lse", "online", "query"), default="all")
    p.add_argument("--mode", choices=("auto", "embeddings", "similarities"), default="auto")
    p.add_argument("--metric", choices=("cosine", "dot"), default="cosine")
    p.add_argument("--beta-query", type=float)
    p.add_argument("--beta-gallery", type=float)
    p.add_argument("--k", type=int, default=1, help="activation-set size for DIS / DualDIS")
    p.add_argument("--csls-k", type=int, default=10)
    p.add_argument("--nnn-k", type=int, default=128)
    p.add_argument("--nnn-alpha", type=float, default=0.75)
    p.add_argument("--topk", type=int, default=10, help="results per query in search")
    p.add_argument("--hubness-k", type=int, default=10)
    p.add_argument("--captions-per-item", type=int)
    p.add_argument("--dim", type=int, help="row width of raw embedding files")
    p.add_argument("--gallery-count", type=int, help="row width of raw similarity files")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", choices=("full", "small", "none"), default="full",
                   help="fit warm-up: a full fit, one on the first 2000 bank rows, or none")
    p.add_argument("--measure-memory", action="store_true",
                   help="report the fit's peak RSS above the RSS after loading the inputs (Linux)")
    p.add_argument("--lse", choices=("straightforward", "inplace"), default="straightforward",
                   help="how the log-sum-exp over the bank axis is written (see log_sum_exp_columns)")
    p.add_argument("--matrix", default="gallery_bank_sims", help="matrix of --task lse")
    p.add_argument("--batches", default="1,8,64", help="batch sizes of --task online")
    p.add_argument("--online-reps", type=int, default=200, help="single-query repetitions of --task online")
    p.add_argument("--candidates", type=int, default=1000, help="candidates per query of the online rerank")
    p.add_argument("--save-matrices", action="store_true", help="also write similarity.npy and scores.npy")
    p.add_argument("--probe-gemm", action="store_true", help="print numpy's GEMM GFLOP/s for Q.G^T")
    p.add_argument("--probe-bandwidth", action="store_true",
                   help="print the bytes/s of reading the --input gallery (or an n x d array) once")
    p.add_argument("--m", type=int, default=1000)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    global LSE_STYLE
    LSE_STYLE = args.lse
    if args.probe_gemm:
        probe_gemm(args)
        return
    if args.probe_bandwidth:
        probe_bandwidth(args)
        return
    if not args.input or (not args.out and args.task != "lse"):
        p.error("--input and --out are required (or use --probe-gemm / --probe-bandwidth)")
    try:
        run(args)
    except (ValueError, FileNotFoundError) as err:
        p.error(str(err))


if __name__ == "__main__":
    sys.exit(main())

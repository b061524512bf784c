"""Sinkhorn oracles from POT (PythonOT), called as the DBSN scripts call it.

ppanzx/DBSN, Image_Retrieval/dbsn.py, Sinkhorn_Normalization: with `sims` the (gallery rows ×
bank-query columns) similarity matrix,
    P, logs = ot.sinkhorn(r, c, 1 - sims, reg=tau, log=True, numItermax=10)
    t_hubness = -tau * np.log(logs["u"])          # one bias per gallery row
and the normalised scores are `sims_test - t_hubness[:, None]` (its rows are gallery items there;
here we write them query-major). DBSN (dual bank) stacks the gallery-bank rows under the gallery
rows (`np.concatenate([qtsims, qqsims])`, both cross-modal: × bank queries) and keeps the first
n_g entries of the bias.

`ot.sinkhorn(..., method="sinkhorn")` dispatches to `ot.bregman.sinkhorn_knopp`; we call both and
check they agree bit for bit.
"""
import warnings

import numpy as np
import ot

from common import cosine, datasets, environment, num, write

# (name, tau, iterations). DBSN uses tau 0.01 on cosine and 10 iterations in its main scripts.
SN_CASES = [("t0.05-i1", 0.05, 1), ("t0.05-i10", 0.05, 10), ("t0.01-i10", 0.01, 10)]


def run_sinkhorn(sims, tau, iters):
    n, m = sims.shape
    r = np.ones(n) / n
    c = np.ones(m) / m
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        P, logs = ot.sinkhorn(r, c, 1 - sims, reg=tau, log=True, numItermax=iters)
        P2, logs2 = ot.bregman.sinkhorn_knopp(r, c, 1 - sims, reg=tau, log=True, numItermax=iters)
    msgs = sorted({str(w.message) for w in caught})
    assert np.array_equal(logs["u"], logs2["u"]) and np.array_equal(logs["v"], logs2["v"])
    # the oracle is only valid when POT ran exactly `iters` iterations: no early stop (checked at
    # iterations 0, 10, ...) and no "numerical errors" roll-back
    assert logs["niter"] == iters - 1, (logs["niter"], iters)
    assert not any("numerical errors" in m for m in msgs), msgs
    return logs["u"], logs["v"], msgs


def log_domain(C, tau, iters):
    """docs/methods.md's log-domain iteration (v then u, uniform marginals, log u starts at -log n),
    written here only to check that it reproduces POT's u; the oracle values are POT's."""
    from scipy.special import logsumexp

    n, m = C.shape
    log_u = np.full(n, -np.log(n))
    for _ in range(iters):
        log_v = -np.log(m) - logsumexp(C / tau + log_u[:, None], axis=0)
        log_u = -np.log(n) - logsumexp(C / tau + log_v[None, :], axis=1)
    return log_u


def main():
    cases = []
    for set_name, inputs_ref, x in datasets():
        q, g, r, h = x["queries"], x["gallery"], x["queryBank"], x["galleryBank"]
        pq = cosine(g, r)  # gallery × bank queries (C of SN)
        pqh = cosine(h, r)  # gallery bank × bank queries (extra rows of DBSN)
        for label, tau, iters in SN_CASES:
            for method, C in (("sn", pq), ("dual-sn", np.vstack([pq, pqh]))):
                u, v, msgs = run_sinkhorn(C, tau, iters)
                # POT's u (cost 1 - C) equals the log-domain iteration on C: the constant moves v only
                assert np.allclose(np.log(u), log_domain(C, tau, iters), rtol=0, atol=1e-9), (set_name, method, label)
                bias = -tau * np.log(u)
                n_g = g.shape[0]
                cases.append(
                    {
                        "name": f"{set_name}/{method}/{label}",
                        "data": set_name,
                        "inputs": inputs_ref,
                        "method": method,
                        "call": "ot.sinkhorn(a, b, 1 - C, reg=tau, log=True, numItermax=iterations) "
                        "(= ot.bregman.sinkhorn_knopp), a = 1/n, b = 1/m_q uniform",
                        "params": {"tau": tau, "iterations": iters, "stopThr": 1e-9},
                        "C": "rows: gallery (cosine to bank queries)"
                        + ("; then gallery bank (cosine to bank queries)" if method == "dual-sn" else "")
                        + "; columns: query bank",
                        "shape": list(C.shape),
                        "potUNiter": iters,
                        "warnings": msgs,
                        "u": num(u),
                        "v": num(v),
                        "bias": num(bias[:n_g]),
                    }
                )
    write(
        "pot.json",
        {
            "peer": "POT",
            "environment": environment(["POT", "numpy"]),
            "convention": "DBSN (ppanzx/DBSN Image_Retrieval/dbsn.py Sinkhorn_Normalization): "
            "bias_i = -tau*log(u_i) over the gallery rows (the first n_g entries of u); "
            "score(q, g_i) = cos(q, g_i) - bias_i (the tests compose it with a float64 cosine of the inputs). "
            "u starts at 1/n; each iteration updates v then u; the constant 1 in the cost 1 - C "
            "scales v by exp(1/tau) and leaves u unchanged. scores are queries x gallery, row-major.",
            "cases": cases,
        },
    )


if __name__ == "__main__":
    main()

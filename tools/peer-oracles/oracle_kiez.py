"""Hubness-reduction oracles from kiez 0.5.0 (dobraczka/kiez): mutual proximity (normal), local
scaling (standard, NICDM), DisSimLocal and CSLS, run through kiez's own classes.

kiez's convention (kiez/hubness_reduction/base.py): `fit(source, target)` indexes both sets and,
for every *target* item, finds its `n_candidates` nearest *source* items (the "t_to_s"
neighbourhood, kept by each reducer's `_fit`). `Kiez.kneighbors()` then takes the `n_candidates`
nearest targets of every *source* item as candidates, rescales their distances with `transform`,
and sorts (ascending distance). So in kiez the source set is both the query set and the targets'
neighbourhood (transductive).

Mapping to dbnorm's cross-modal form (docs/methods.md): kiez source = dbnorm's query bank R,
kiez target = the gallery G. The test queries Q are passed to the same reducer's own functions as
kiez's `kneighbors` does for the source: `nn_algo.kneighbors(k=n_candidates, query=Q)` for the
candidates, then `transform(dist, ind, Q)` and `HubnessReduction._sort`. Then
- a gallery item's neighbourhood = its n_candidates nearest bank queries (dbnorm: bank column j);
- a query's neighbourhood = its n_candidates nearest gallery items (dbnorm: q's gallery row);
- only the n_candidates candidates of each query are rescored (kiez has no exhaustive mode), so
  the tests compare dbnorm's scores on those (query, candidate) pairs, or rerank the same lists.
kiez's neighbourhood size IS n_candidates for every reducer: LocalScaling's documented `k`
(default 5) is not a constructor parameter in 0.5.0 (it is swallowed by **kwargs; see
local_scaling.py `__init__`), so `k` = n_candidates there.

Distances: sklearn `metric="cosine"` (d = 1 - cos) for MP / LS / NICDM / CSLS,
`metric="sqeuclidean"` for DisSimLocal (kiez refuses any other metric for it). Inputs are unit
vectors, so both orders agree with the cosine order.
"""
import warnings

import numpy as np

from kiez.hubness_reduction import CSLS, DisSimLocal, LocalScaling, MutualProximity
from kiez.hubness_reduction.base import HubnessReduction
from kiez.neighbors import SklearnNN

from common import datasets, environment, num, write

REDUCERS = {
    "mp-normal": (lambda nn: MutualProximity(method="normal", nn_algo=nn), "cosine"),
    "ls-standard": (lambda nn: LocalScaling(method="standard", nn_algo=nn), "cosine"),
    "ls-nicdm": (lambda nn: LocalScaling(method="nicdm", nn_algo=nn), "cosine"),
    "dsl": (lambda nn: DisSimLocal(nn_algo=nn), "sqeuclidean"),
    "csls": (lambda nn: CSLS(nn_algo=nn), "cosine"),
}


def run(reducer, metric, nc, q, g, r):
    nn = SklearnNN(n_candidates=nc, metric=metric, algorithm="brute")
    hub = REDUCERS[reducer][0](nn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kiez warns when it clamps k to a set's size
        hub.fit(r, g)  # source = query bank, target = gallery
        cand_dist, cand_ind = hub.nn_algo.kneighbors(k=nc, query=q, s_to_t=True, return_distance=True)
    red_dist, red_ind = hub.transform(cand_dist.copy(), cand_ind, q)
    assert np.array_equal(red_ind, cand_ind)
    top_dist, top_ind = HubnessReduction._sort(red_dist, red_ind, red_dist.shape[1])
    return cand_ind, cand_dist, red_dist, top_ind, top_dist


def check_public_path(q, g, r):
    """Self-check: with the query bank itself as the queries, the path above equals kiez's public
    `Kiez(...).fit(source, target).kneighbors()` bit for bit, for every reducer."""
    from kiez import Kiez

    for reducer, (make, metric) in REDUCERS.items():
        nc = 7
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k = Kiez(algorithm="SklearnNN", algorithm_kwargs={"n_candidates": nc, "metric": metric, "algorithm": "brute"},
                     hubness=type(make(SklearnNN(n_candidates=nc, metric=metric))), hubness_kwargs=(
                         {"method": "normal"} if reducer == "mp-normal" else {"method": reducer[3:]} if reducer.startswith("ls-") else {}))
            k.fit(r, g)
            dist, ind = k.kneighbors(nc)
        _, _, _, top_ind, top_dist = run(reducer, metric, nc, r, g, r)
        assert np.array_equal(ind, top_ind) and np.array_equal(dist, top_dist), reducer


def main():
    cases = []
    for set_name, inputs_ref, x in datasets():
        q, g, r = x["queries"], x["gallery"], x["queryBank"]
        check_public_path(q, g, r)
        n_g, m_q = g.shape[0], r.shape[0]
        full = max(n_g, m_q)
        plan = [
            ("mp-normal", full),  # moments over the whole gallery row and bank column
            ("mp-normal", 10),  # kiez's candidate-list form: moments over the 10 nearest
            ("ls-standard", 5),
            ("ls-standard", 10),
            ("ls-nicdm", 5),
            ("ls-nicdm", 10),
            ("dsl", 5),
            ("dsl", 10),
            ("csls", 10),
        ]
        if set_name == "real":  # keep the committed file small: one neighbourhood size per reducer
            plan = [p for p in plan if p[1] != 5]
        for reducer, nc in plan:
            metric = REDUCERS[reducer][1]
            cand_ind, cand_dist, red, top_ind, top_dist = run(reducer, metric, nc, q, g, r)
            nc_eff = cand_ind.shape[1]
            shift = None
            if reducer == "dsl":
                # dis_sim.py transform: `hub_reduced_dist += -min_dist` when the batch minimum is
                # negative: a constant over the whole batch (ranking-invariant). The minimum is 0
                # after the shift, so the constant is recoverable by the tests.
                shift = "batch-min" if float(red.min()) == 0.0 else "none"
            cases.append(
                {
                    "name": f"{set_name}/{reducer}/nc{nc_eff}",
                    "data": set_name,
                    "inputs": inputs_ref,
                    "reducer": reducer,
                    "call": {
                        "mp-normal": "MutualProximity(method='normal', nn_algo=nn)",
                        "ls-standard": "LocalScaling(method='standard', nn_algo=nn)",
                        "ls-nicdm": "LocalScaling(method='nicdm', nn_algo=nn)",
                        "dsl": "DisSimLocal(nn_algo=nn)",
                        "csls": "CSLS(nn_algo=nn)",
                    }[reducer]
                    + f"; nn = SklearnNN(n_candidates={nc}, metric='{metric}', algorithm='brute'); "
                    "fit(source=queryBank, target=gallery); "
                    "nn.kneighbors(k=n_candidates, query=queries, s_to_t=True); transform(dist, ind, queries); "
                    "HubnessReduction._sort",
                    "params": {"n_candidates": nc, "n_candidates_effective": nc_eff, "metric": metric},
                    "neighbourhood": {
                        "query": f"its {nc_eff} nearest gallery items (= its candidates)",
                        "gallery": f"its {min(nc, m_q)} nearest query-bank items",
                    },
                    "dslShift": shift,
                    "queries": int(q.shape[0]),
                    "candidates": nc_eff,
                    "candidateIndices": num(cand_ind),
                    "reducedDistances": num(red, 11),
                    "topIndices": num(top_ind),
                }
            )
    write(
        "kiez.json",
        {
            "peer": "kiez",
            "environment": environment(["kiez", "numpy", "scikit-learn", "scipy"]),
            "convention": "kiez source = dbnorm query bank, kiez target = dbnorm gallery, test queries "
            "scored with the reducer's own transform over their n_candidates nearest gallery items. "
            "Every matrix is queries x candidates, row-major; candidateIndices are gallery rows; "
            "reducedDistances are aligned with candidateIndices; topIndices is kiez's "
            "ascending sort of them (HubnessReduction._sort). Distances: lower is better (dbnorm returns -distance, and "
            "1 - distance for mutual proximity).",
            "deviations": [
                "LocalScaling ignores its documented k (default 5): the neighbourhood is n_candidates "
                "(kiez/hubness_reduction/local_scaling.py __init__ takes no k; **kwargs swallows it).",
                "MutualProximity(method='empiric') indexes the target's source-neighbour distances with "
                "target indices (mutual_proximity.py transform: `d_j[j, :] = tmp[neigh_ind[i]]`, tmp is "
                "indexed by source ids); correct only when source and target are one set, so no "
                "cross-modal empiric oracle is written.",
                "DisSimLocal shifts all rescaled distances of a batch by -min when the minimum is "
                "negative (dis_sim.py transform, `hub_reduced_dist += -min_dist`), so values depend on "
                "the batch; rankings do not.",
            ],
            "cases": cases,
        },
    )


if __name__ == "__main__":
    main()

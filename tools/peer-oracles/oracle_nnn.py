"""NNN and DN oracles from nnn-retrieval 1.0.1 (multimodal-interpretability/nnn), through its own
NNNRanker / DNRanker with the exhaustive torch NNNRetriever on the CPU.

Convention (nnn/nnn_ranker.py, nnn/nnn_retriever.py): `retrieval_embeds` is the gallery,
`reference_embeds` the query-modality bank; `alternate_ks` = k and `alternate_weight` = alpha.
setup computes, per gallery item, the mean of its k largest inner products with the reference
set (`alignment_means`); search returns the top-k of `q . g - alpha * alignment_mean(g)`.
Inner products are plain dot products: the inputs are unit rows, so they equal dbnorm's cosine.
We pass float64 arrays, so torch computes in float64.

DN (nnn/dn_ranker.py): the gallery and the reference set are shifted by
`- dn_lambda * mean(retrieval_dev_embeds)` and `- dn_lambda * mean(query_dev_embeds)`, queries by
the query mean, then NNN runs on the shifted vectors. dbnorm's DN takes its means from the banks
(docs/methods.md), so the dev sets here are dbnorm's banks: retrieval_dev_embeds = gallery bank,
query_dev_embeds = query bank. alternate_weight = 0 is plain DN.
"""
import numpy as np

from nnn import DNRanker, NNNRanker, NNNRetriever

from common import datasets, environment, num, write


def main():
    cases = []
    for set_name, inputs_ref, x in datasets():
        q, g, r, h = x["queries"], x["gallery"], x["queryBank"], x["galleryBank"]
        n_g, d = g.shape
        plan = [("nnn", 8, 0.75, None), ("nnn", 16, 0.5, None), ("dn", 8, 0.0, 0.5), ("dn", 8, 0.75, 0.5)]
        if set_name == "synthetic":
            plan.insert(2, ("nnn", r.shape[0], 0.75, None))  # k = the whole bank
        for method, k, alpha, lam in plan:
            retriever = NNNRetriever(d)
            if method == "nnn":
                ranker = NNNRanker(retriever, g.copy(), r.copy(), alternate_ks=k, alternate_weight=alpha, batch_size=16)
                call = f"NNNRanker(NNNRetriever(d), gallery, queryBank, alternate_ks={k}, alternate_weight={alpha}, batch_size=16)"
                params = {"nnnK": k, "nnnAlpha": alpha}
            else:
                ranker = DNRanker(
                    retriever, g.copy(), r.copy(), alternate_ks=k, alternate_weight=alpha, batch_size=16,
                    retrieval_dev_embeds=h.copy(), query_dev_embeds=r.copy(), dn_lambda=lam,
                )
                call = (
                    f"DNRanker(NNNRetriever(d), gallery, queryBank, alternate_ks={k}, alternate_weight={alpha}, "
                    f"batch_size=16, retrieval_dev_embeds=galleryBank, query_dev_embeds=queryBank, dn_lambda={lam})"
                )
                params = {"nnnK": k, "nnnAlpha": alpha, "lambda": lam}
            top = n_g if set_name == "synthetic" else 10  # the whole ranking / a top-10 (file size)
            scores, indices = ranker.search(q.copy(), top)
            assert scores.dtype == np.float64, scores.dtype
            cases.append(
                {
                    "name": f"{set_name}/{method}/k{k}-a{alpha}" + (f"-l{lam}" if lam is not None else ""),
                    "data": set_name,
                    "inputs": inputs_ref,
                    "method": method,
                    "call": call + f"; search(queries, top_k={top})",
                    "params": params,
                    "dtype": "float64",
                    "queries": int(q.shape[0]),
                    "k": int(top),
                    "alignmentMeans": num(ranker.alignment_means.cpu().numpy()),
                    "indices": num(indices),
                    "scores": num(scores, 11),
                }
            )
    write(
        "nnn.json",
        {
            "peer": "nnn-retrieval",
            "environment": environment(["nnn-retrieval", "torch", "numpy"]),
            "convention": "retrieval_embeds = gallery, reference_embeds = query bank, alternate_ks = nnnK, "
            "alternate_weight = nnnAlpha; DN dev sets = the banks (retrieval_dev = gallery bank, query_dev = "
            "query bank). indices/scores: queries x k (synthetic: the whole ranking; real: top 10), row-major, best first "
            "(torch.topk order). alignmentMeans: per gallery item, the mean of its k largest reference "
            "similarities (before alpha; on shifted vectors for DN).",
            "cases": cases,
        },
    )


if __name__ == "__main__":
    main()

"""Writes the seeded synthetic inputs of the peer oracles (numpy only; any of the venvs runs it).

Two modalities that share a latent structure, with a common offset per modality (the "modality
gap" that makes cosine retrieval hubby), L2-normalised and rounded to float32. The values are
written with the shortest decimal that round-trips in float32, so the tests rebuild bit-identical
Float32Arrays.
"""
import json

import numpy as np

from common import FIXTURES

SEED = 20261129
D = 16
N_QUERY, N_GALLERY, M_QUERY, M_GALLERY = 30, 40, 50, 45


def unit32(x):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def main():
    rng = np.random.default_rng(SEED)
    gap_q = rng.normal(size=D) * 0.6  # query-modality offset
    gap_g = rng.normal(size=D) * 0.6  # gallery-modality offset
    gallery_latent = rng.normal(size=(N_GALLERY, D))
    bank_latent = rng.normal(size=(M_GALLERY, D))
    # each test query describes a gallery item, each bank query a gallery-bank item (with noise)
    q_of = rng.integers(0, N_GALLERY, size=N_QUERY)
    r_of = rng.integers(0, M_GALLERY, size=M_QUERY)
    mats = {
        "queries": unit32(gallery_latent[q_of] + 0.8 * rng.normal(size=(N_QUERY, D)) + gap_q),
        "gallery": unit32(gallery_latent + gap_g),
        "queryBank": unit32(bank_latent[r_of] + 0.8 * rng.normal(size=(M_QUERY, D)) + gap_q),
        "galleryBank": unit32(bank_latent + gap_g),
    }
    doc = {
        "about": "Seeded synthetic inputs of the peer oracles (tools/peer-oracles/make_inputs.py). "
        "Rows are L2-normalised float32 vectors, row-major; values are the shortest decimals that "
        "round-trip in float32.",
        "generator": {"numpy": np.__version__, "seed": SEED, "rng": "numpy.random.default_rng"},
        "matrices": {
            k: {
                "rows": int(v.shape[0]),
                "cols": int(v.shape[1]),
                "data": [float(np.format_float_positional(x, unique=True)) for x in v.ravel()],
            }
            for k, v in mats.items()
        },
    }
    # the values must survive the decimal round trip bit for bit
    for k, v in mats.items():
        back = np.asarray(doc["matrices"][k]["data"], dtype=np.float32).reshape(v.shape)
        assert np.array_equal(back, v), k
    with open(FIXTURES / "inputs-synthetic.json", "w") as f:
        json.dump(doc, f, indent=None)
        f.write("\n")
    print("wrote inputs-synthetic.json")


if __name__ == "__main__":
    main()

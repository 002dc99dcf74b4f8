"""The rating generator's item choice: at random (taste 0) or missing-not-at-random (taste > 0)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from batchml.synth.model import make_model, sample_pairs
from batchml.synth.netflix import write_netflix_dump

N_USERS, N_ITEMS, N = 400, 150, 16_000


@pytest.fixture(scope="module")
def model():
    return make_model(N_USERS, N_ITEMS, 3, 0.5, np.random.default_rng(0))


def _pairs(model, taste):
    return sample_pairs(N, N_USERS, N_ITEMS, np.random.default_rng(1), model=model, taste=taste)


def _jaccard_vs_item_similarity(model, u, i) -> float:
    """Correlation, over item pairs that share a user, of their Jaccard (from co-occurrence) with
    q_i.q_j (the ground truth's item similarity)."""
    x = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(N_USERS, N_ITEMS))
    co = (x.T @ x).toarray()
    n = np.diag(co)
    jac = co / (n[:, None] + n[None, :] - co)
    qq = model.item_factors @ model.item_factors.T
    upper = np.triu_indices(N_ITEMS, 1)
    shared = co[upper] > 0
    return float(np.corrcoef(jac[upper][shared], qq[upper][shared])[0, 1])


def test_taste_zero_is_the_random_choice(model):
    u0, i0 = sample_pairs(N, N_USERS, N_ITEMS, np.random.default_rng(1))
    u1, i1 = _pairs(model, 0.0)
    assert np.array_equal(u0, u1) and np.array_equal(i0, i1)


def test_taste_makes_users_rate_what_they_like(model):
    u0, i0 = _pairs(model, 0.0)
    u, i = _pairs(model, 2.0)
    assert len(u) == N and len(np.unique(u.astype(np.int64) * N_ITEMS + i)) == N
    sd = model.affinity(u0, i0).std()
    assert abs(model.affinity(u0, i0).mean()) < 0.1 * sd
    assert model.affinity(u, i).mean() > 0.3 * sd
    # co-occurrence now carries taste: items liked by the same users are rated together
    assert abs(_jaccard_vs_item_similarity(model, u0, i0)) < 0.1
    assert _jaccard_vs_item_similarity(model, u, i) > 0.3


def test_taste_needs_the_model():
    with pytest.raises(ValueError, match="model"):
        sample_pairs(100, 20, 20, np.random.default_rng(0), taste=1.0)


def test_netflix_dump_records_its_taste(tmp_path):
    dump = write_netflix_dump(tmp_path / "nf", 3000, seed=3, taste=1.5)
    truth = json.loads((tmp_path / "nf" / "ground_truth" / "truth.json").read_text())
    assert truth["taste"] == 1.5 and dump.n_ratings == 3000

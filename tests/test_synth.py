"""The rating generator's item choice: at random (taste 0) or missing-not-at-random (taste > 0)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

import batchml.synth.model as synth_model
from batchml.synth.model import draw_dates, draw_ratings, make_model, sample_pairs
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


def test_sliced_math_equals_whole_array_math(model, monkeypatch):
    """The generator works over slices of rows to bound its memory; the numbers (and the random
    stream consumed) are those of the plain whole-array formulas."""
    rng = np.random.default_rng(5)
    u, i = rng.integers(0, N_USERS, 10_007), rng.integers(0, N_ITEMS, 10_007)
    monkeypatch.setattr(synth_model, "CHUNK_ROWS", 1000)
    dot = (model.user_factors[u] * model.item_factors[i]).sum(axis=1)
    assert np.allclose(model.affinity(u, i), dot, rtol=0, atol=1e-12)
    whole = np.einsum("ij,ij->i", model.user_factors[u], model.item_factors[i])
    mean = model.mu + model.user_bias[u] + model.item_bias[i] + whole
    assert np.array_equal(model.mean(u, i), mean)
    r0, r1 = np.random.default_rng(9), np.random.default_rng(9)
    want = np.clip(np.round(mean + r0.normal(0, model.noise, len(u))), 1, 5).astype(np.int8)
    assert np.array_equal(draw_ratings(model, u, i, r1), want)
    span = int((synth_model.NETFLIX_LAST_DATE - synth_model.NETFLIX_FIRST_DATE).astype(int))
    days = (span * np.sqrt(r0.random(5000))).astype(np.int64)
    assert np.array_equal(draw_dates(5000, r1), synth_model.NETFLIX_FIRST_DATE + days)
    assert r0.bit_generator.state == r1.bit_generator.state


def test_sliced_sampling_equals_one_slice(model, monkeypatch):
    """The taste sampling gives the same pairs whatever the slice size; sorted by (item, user)."""
    whole = _pairs(model, 1.5)
    monkeypatch.setattr(synth_model, "CHUNK_ROWS", 777)
    u, i = _pairs(model, 1.5)
    assert np.array_equal(u, whole[0]) and np.array_equal(i, whole[1])
    assert u.dtype == i.dtype == np.int32
    order = np.lexsort((u, i))
    assert np.array_equal(order, np.arange(N))


def test_netflix_dump_is_the_same_whatever_the_slice_size(tmp_path, monkeypatch):
    def files(d):
        return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}

    write_netflix_dump(tmp_path / "whole", 20_000, seed=4, taste=1.5, plant=2)
    monkeypatch.setattr(synth_model, "CHUNK_ROWS", 999)
    write_netflix_dump(tmp_path / "sliced", 20_000, seed=4, taste=1.5, plant=2)
    whole, sliced = files(tmp_path / "whole"), files(tmp_path / "sliced")
    assert len(whole) == 10 and whole == sliced


def test_sorted_unique_equals_numpy_unique():
    from batchml.numeric import sorted_unique

    rng = np.random.default_rng(3)
    for a in (rng.integers(0, 50, 1000), rng.permutation(500), np.array([], dtype=np.int64)):
        want = np.unique(a)
        np.testing.assert_array_equal(sorted_unique(a), want)
        np.testing.assert_array_equal(sorted_unique(a.copy(), inplace=True), want)

"""A known rating model to generate data from: r = clip(round(mu + b_u + b_i + p_u.q_i + noise), 1, 5).

Users have power-law activity (a few users rate thousands of items), items power-law popularity.
Everything is deterministic given the seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from batchml.numeric import sorted_unique

NETFLIX_MAX_CUSTOMER_ID = 2_649_429
NETFLIX_FIRST_DATE = np.datetime64("1999-11-11")
NETFLIX_LAST_DATE = np.datetime64("2005-12-31")
# rows per slice of the element-wise math over ratings (bounds the float temporaries; the
# results are the same as over the whole arrays)
CHUNK_ROWS = 1 << 20


def row_slices(n: int, chunk: int = 0):
    """Consecutive slices covering ``range(n)``, ``chunk`` (default CHUNK_ROWS) rows each."""
    chunk = chunk or CHUNK_ROWS
    return (slice(a, min(n, a + chunk)) for a in range(0, n, chunk))


@dataclass
class RatingModel:
    """Ground-truth parameters of a generated rating set."""

    mu: float
    user_bias: np.ndarray      # (n_users,)
    item_bias: np.ndarray      # (n_items,)
    user_factors: np.ndarray   # (n_users, rank)
    item_factors: np.ndarray   # (n_items, rank)
    noise: float
    rating_min: float = 1.0
    rating_max: float = 5.0

    @property
    def n_users(self) -> int:
        return len(self.user_bias)

    @property
    def n_items(self) -> int:
        return len(self.item_bias)

    def affinity(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """The interaction term p_u.q_i of each (u, i) pair (in slices: the gathered factor rows
        of all pairs at once would take 2 x rank x 8 bytes a pair)."""
        out = np.empty(len(u))
        for s in row_slices(len(u)):
            out[s] = np.einsum("ij,ij->i", self.user_factors[u[s]], self.item_factors[i[s]])
        return out

    def mean(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Noise-free score mu + b_u + b_i + p_u.q_i (unclipped)."""
        out = np.empty(len(u))
        for s in row_slices(len(u)):
            us, is_ = u[s], i[s]
            out[s] = self.mu + self.user_bias[us] + self.item_bias[is_] + self.affinity(us, is_)
        return out

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """The true model's prediction, clipped to the rating scale (the RMSE floor predictor)."""
        return np.clip(self.mean(u, i), self.rating_min, self.rating_max)

    def expected_rating(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """E[clip(round(mean + noise))]: the best possible predictor of the observed ratings."""
        m = self.mean(u, i)
        if self.noise == 0:
            return np.clip(np.round(m), self.rating_min, self.rating_max)
        levels = np.arange(self.rating_min, self.rating_max + 1)
        erf = np.vectorize(math.erf)
        # P(round(m+e) <= k) = Phi((k + 0.5 - m)/sigma)
        cdf = lambda k: 0.5 * (1 + erf((k + 0.5 - m) / (self.noise * math.sqrt(2))))  # noqa: E731
        expected = np.zeros_like(m)
        prev = np.zeros_like(m)
        for k in levels:
            cur = cdf(k) if k < self.rating_max else np.ones_like(m)
            expected += k * (cur - prev)
            prev = cur
        return expected


def default_sizes(n_ratings: int, n_users: int = 0, n_items: int = 0) -> tuple[int, int]:
    """Netflix-like shape: ~200 ratings per user, catalog growing with sqrt(N), capped at Prize size."""
    items = n_items or int(np.clip(int(1.5 * math.sqrt(n_ratings)), 10, 17_770))
    users = n_users or max(int(np.clip(n_ratings // 200, 30, 480_189)), math.ceil(4 * n_ratings / items))
    if users * items < 2 * n_ratings:
        raise ValueError(f"{n_ratings} ratings do not fit {users} users x {items} items at <50% density")
    return users, items


def make_model(n_users: int, n_items: int, rank: int, noise: float, rng: np.random.Generator,
               mu: float = 3.6, user_bias_sd: float = 0.4, item_bias_sd: float = 0.5,
               factor_sd: float = 0.6) -> RatingModel:
    """Draw ground-truth biases and factors; ``factor_sd`` is the sd of p_u.q_i."""
    scale = math.sqrt(factor_sd / math.sqrt(rank))
    return RatingModel(
        mu=mu,
        user_bias=rng.normal(0, user_bias_sd, n_users),
        item_bias=rng.normal(0, item_bias_sd, n_items),
        user_factors=rng.normal(0, scale, (n_users, rank)),
        item_factors=rng.normal(0, scale, (n_items, rank)),
        noise=noise,
    )


def _powerlaw_weights(n: int, shape: float, cap: float, rng: np.random.Generator) -> np.ndarray:
    w = rng.pareto(shape, n) + 1.0
    w = np.minimum(w, np.quantile(w, 0.999) * cap)
    return w / w.sum()


def _in_sorted(a: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """``np.isin(a, sorted_keys)`` for sorted ``sorted_keys`` by binary search (no big merge)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(a), dtype=bool)
    pos = np.searchsorted(sorted_keys, a)
    np.minimum(pos, len(sorted_keys) - 1, out=pos)
    return sorted_keys[pos] == a


def _taste_kept(model: RatingModel, u: np.ndarray, i: np.ndarray, uniform: np.ndarray,
                taste: float, dot_sd: float) -> np.ndarray:
    """Which drawn pairs are kept: ``uniform < sigmoid(taste * p_u.q_i / dot_sd)`` (in slices)."""
    kept = np.empty(len(u), dtype=bool)
    for s in row_slices(len(u)):
        z = model.affinity(u[s], i[s]) / dot_sd
        kept[s] = uniform[s] < 1.0 / (1.0 + np.exp(-taste * z))
    return kept


def _pair_keys(u: np.ndarray, i: np.ndarray, n_items: int) -> np.ndarray:
    """``u * n_items + i`` as int64 keys (in slices)."""
    keys = np.empty(len(u), dtype=np.int64)
    for s in row_slices(len(u)):
        keys[s] = u[s].astype(np.int64) * n_items + i[s]
    return keys


def _split_by_item(keys: np.ndarray, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``user * n_items + item`` keys as int32 (users, items) sorted by (item, user)."""
    by_item = np.empty(len(keys), dtype=np.int64)
    for s in row_slices(len(keys)):
        by_item[s] = (keys[s] % n_items) * n_users + keys[s] // n_items
    by_item.sort()
    users = np.empty(len(keys), dtype=np.int32)
    items = np.empty(len(keys), dtype=np.int32)
    for s in row_slices(len(keys)):
        items[s], users[s] = np.divmod(by_item[s], n_users)
    return users, items


def sample_pairs(n_ratings: int, n_users: int, n_items: int, rng: np.random.Generator,
                 user_shape: float = 1.1, item_shape: float = 1.3, *,
                 model: RatingModel | None = None,
                 taste: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``n_ratings`` distinct (user, item) pairs with power-law user activity and item
    popularity.  Every user and every item gets at least one rating when n_ratings allows.

    ``taste`` > 0 (with the ground-truth ``model``) makes the choice missing-not-at-random, as in
    real dumps: a drawn pair is kept with probability sigmoid(taste · z), z = p_u·q_i in units of
    its standard deviation, so users mostly rate what they like and items liked by the same
    users are rated together (co-occurrence then carries taste).  ``taste`` = 0 consumes the
    random stream exactly as before.
    Returns int32 arrays sorted by (item, user)."""
    if n_ratings > n_users * n_items // 2:
        raise ValueError("too many ratings for the catalog")
    pu = _powerlaw_weights(n_users, user_shape, 4.0, rng)
    # a user may hold at most half of the catalog
    pu = np.minimum(pu, 0.5 * n_items / n_ratings)
    pu /= pu.sum()
    pi = _powerlaw_weights(n_items, item_shape, 2.0, rng)
    pi = np.minimum(pi, 0.6 * n_users / n_ratings)
    pi /= pi.sum()
    if taste > 0:
        if model is None:
            raise ValueError("taste > 0 needs the ground-truth model")
        probe = rng.integers(0, [n_users, n_items], size=(4096, 2))
        dot_sd = float(model.affinity(probe[:, 0], probe[:, 1]).std()) or 1.0
        accept_rate = 0.5
    # seed coverage: every user and item appears once when possible
    base = min(n_ratings, max(n_users, n_items))
    cover_u = np.arange(base) % n_users
    cover_i = rng.permutation(base) % n_items
    keys = sorted_unique(cover_u.astype(np.int64) * n_items + cover_i)
    for _ in range(50):
        need = n_ratings - len(keys)
        if need <= 0:
            break
        draw = int(need * (1.1 if taste <= 0 else 1.1 / accept_rate)) + 16
        u = rng.choice(n_users, size=draw, p=pu).astype(np.int32)
        i = rng.choice(n_items, size=draw, p=pi).astype(np.int32)
        if taste > 0:
            kept = _taste_kept(model, u, i, rng.random(draw), taste, dot_sd)
            accept_rate = max(0.05, float(kept.mean()))
            u, i = u[kept], i[kept]
        new = sorted_unique(_pair_keys(u, i, n_items), inplace=True)
        del u, i
        new = new[~_in_sorted(new, keys)]
        if len(new) > need:
            new = rng.choice(new, size=need, replace=False)
        keys = np.concatenate([keys, new])
        del new
        keys = sorted_unique(keys, inplace=True)
    if len(keys) != n_ratings:
        raise RuntimeError(f"could only place {len(keys)} of {n_ratings} distinct pairs")
    return _split_by_item(keys, n_users, n_items)


def draw_ratings(model: RatingModel, u: np.ndarray, i: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Observed integer ratings: the true mean plus Gaussian noise, rounded and clipped."""
    noise = rng.normal(0, model.noise, len(u))
    out = np.empty(len(u), dtype=np.int8)
    for s in row_slices(len(u)):
        raw = model.mean(u[s], i[s]) + noise[s]
        out[s] = np.clip(np.round(raw), model.rating_min, model.rating_max)
    return out


def draw_dates(n: int, rng: np.random.Generator, first=NETFLIX_FIRST_DATE,
               last=NETFLIX_LAST_DATE) -> np.ndarray:
    """Dates (datetime64[D]) uniform in [first, last], skewed toward the end like the Prize data."""
    return first + draw_day_offsets(n, rng, first, last).astype("timedelta64[D]")


def draw_day_offsets(n: int, rng: np.random.Generator, first=NETFLIX_FIRST_DATE,
                     last=NETFLIX_LAST_DATE) -> np.ndarray:
    """The days after ``first`` of :func:`draw_dates` (same draws), as compact int16/int32."""
    span = int((last - first).astype(int))
    uniform = rng.random(n)
    out = np.empty(n, dtype=np.int16 if span < 2 ** 15 else np.int32)
    for s in row_slices(n):
        out[s] = (span * np.sqrt(uniform[s])).astype(np.int64)
    return out


def sparse_ids(n: int, rng: np.random.Generator, max_id: int = NETFLIX_MAX_CUSTOMER_ID) -> np.ndarray:
    """``n`` distinct sorted ids in 1..max_id with gaps; max_id itself is always one of them."""
    if n > max_id:
        raise ValueError("more users than ids")
    ids = rng.choice(np.arange(1, max_id, dtype=np.int64), size=n - 1, replace=False)
    return np.sort(np.append(ids, max_id)).astype(np.int64)


def draw_rating_set(n_ratings: int, seed: int, rank: int = 5, noise: float = 0.5,
                    taste: float = 0.0):
    """Seeded generator, ground-truth model and ``n_ratings`` distinct (user, item) pairs of the
    default shape: ``(rng, model, users, items)``, the common start of every format's generator
    (``taste``: see :func:`sample_pairs`)."""
    rng = np.random.default_rng(seed)
    n_users, n_items = default_sizes(n_ratings)
    model = make_model(n_users, n_items, rank, noise, rng)
    users, items = sample_pairs(n_ratings, n_users, n_items, rng, model=model, taste=taste)
    return rng, model, users, items

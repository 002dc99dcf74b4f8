"""Job configuration: YAML parsed once into frozen dataclasses.

A config file is a mapping of sections (``spark``, ``paths``, ``ingest``, ...) to settings.  Every
job accepts ``--conf FILE`` (default ``conf/local.yaml``) and any number of ``--set key=value``
overrides (``--set spark.shuffle_partitions=8``).  Unknown sections or settings, and values of the
wrong type or out of range, fail at start with a :class:`ConfigError` naming the setting.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from batchml.errors import ConfigError
from batchml.holdout_spec import parse_test_spec

# The checkout's conf/local.yaml: spark-submit.sh exports BATCHML_HOME (the library may then be
# imported from the shipped zip); otherwise the package sits at <checkout>/lib/batchml.
DEFAULT_CONF = Path(os.environ.get("BATCHML_HOME") or Path(__file__).resolve().parents[2]) / "conf" / "local.yaml"


def _is_test_spec(value: str) -> bool:
    try:
        parse_test_spec(value)
    except ConfigError:
        return False
    return True


def _check(pred: Callable[[Any], bool], what: str) -> dict:
    return {"check": pred, "what": what}


@dataclass(frozen=True)
class SparkSettings:
    """How the SparkSession is built (ignored where spark-submit already decided, e.g. the master)."""

    master: str = "local[*]"
    app_name: str = "batchml"
    # conf/local.yaml raises it for local mode, where the driver is the only JVM
    driver_memory: str = "4g"
    shuffle_partitions: int = field(default=16, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    max_partition_mb: int = field(default=128, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    checkpoint_dir: str = "data/checkpoints"
    ui: bool = False
    log_level: str = field(
        default="WARN",
        metadata=_check(lambda v: v in {"ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"},
                        "one of ALL DEBUG INFO WARN ERROR FATAL OFF"),
    )
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestSettings:
    """Ingest behaviour shared by every dump format."""

    max_reject_fraction: float = field(
        default=0.01, metadata=_check(lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"))
    remove_probe: bool = False
    raw_max_chars: int = field(default=300, metadata=_check(lambda v: v >= 16, "an integer >= 16"))
    # up to this many accepted rating lines, duplicates are resolved by one aggregate and dense ids
    # numbered on the driver (fewer Spark jobs); above it, only repeated keys take the aggregate
    # and ids are numbered by a distributed sort.  The same tables either way.
    local_max_rows: int = field(default=2_000_000, metadata=_check(lambda v: v >= 0, "an integer >= 0"))


@dataclass(frozen=True)
class GenerateSettings:
    """Defaults of the synthetic dump generator (``jobs/generate.py``)."""

    seed: int = 42
    ratings: int = field(default=200_000, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    users: int = field(default=0, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: derived)"))
    items: int = field(default=0, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: derived)"))
    rank: int = field(default=5, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    noise: float = field(default=0.5, metadata=_check(lambda v: v >= 0, "a number >= 0"))
    probe_fraction: float = field(
        default=0.02, metadata=_check(lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"))
    taste: float = field(default=0.0, metadata=_check(
        lambda v: v >= 0, "a number >= 0 (0: which items a user rates ignores taste)"))


@dataclass(frozen=True)
class FactorizeSettings:
    """Factorization job (``jobs/factorize.py``): held-out test, validation grid, ALS and biases."""

    # probe | random:F | temporal:F | a dataset dir (mapped through the source ids) | a table of indices
    test: str = field(default="random:0.1", metadata=_check(
        lambda v: _is_test_spec(v), "probe, random:F, temporal:F or cutoff:F with F in (0, 1), or a ratings directory"))
    seed: int = 42
    # carved from training; picks rank and reg from the grids
    validation_fraction: float = field(
        default=0.1, metadata=_check(lambda v: 0.0 < v < 1.0, "a number in (0, 1)"))
    # MLlib scales reg by each user's / item's rating count (ALS-WR): a higher rank
    # needs a higher reg; validation picks the (rank, reg) pair
    ranks: tuple[int, ...] = field(
        default=(10, 50), metadata=_check(lambda v: len(v) > 0 and all(r >= 1 for r in v),
                                          "a non-empty list of integers >= 1"))
    regs: tuple[float, ...] = field(
        default=(0.05, 0.1, 0.2),
        metadata=_check(lambda v: len(v) > 0 and all(r >= 0 for r in v),
                        "a non-empty list of numbers >= 0"))
    # the search runs on the ratings of a user sample of about this many fit ratings (every
    # sampled user keeps all their ratings), and only the chosen setting is re-fit on everything;
    # 0: search on all of them
    search_sample_ratings: int = field(
        default=1_000_000, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: no sample)"))
    # ... and at least this many per training item on average: a user sample thins every item's
    # ratings, and with few per item the search favours a small rank (100M Prize-shaped: 1M sample
    # ratings over 17,770 movies, 56 each, chose rank 5 where 30M's 103 each chose 10; probe RMSE
    # 0.5870 at 100M against 0.5577 at 30M)
    search_sample_item_ratings: int = field(
        default=200, metadata=_check(lambda v: v >= 0, "an integer >= 0"))
    # after a search on a user sample, search ALS+bias's and plain ALS's reg again on every training
    # rating (the chosen rank; from one grid step below each choice, as a sample favours a larger
    # reg: 10M Prize-shaped, 0.025 on a 10-20 % user sample vs 0.0125 on all, +0.53 % probe RMSE)
    search_refine: bool = True
    # ... on the ratings of a second, larger user sample: at least this many fit ratings per training
    # item (0: every training rating).  100M Prize-shaped: the refine on all 88.7M ratings took 1,254 s
    # of the job's 2,210 (7 fits at ~180 s); all of 10M's (1,400 per item) and 30M's (2,700) chose
    # the ALS+bias λ of all of 100M's (4,500), and so did 1,000 per item at 100M (232 s; plain ALS's
    # λ came out one step higher there: +0.7 % on that row)
    search_refine_item_ratings: int = field(
        default=1000, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: every rating)"))
    # values tried past an edge of a grid (of >= 2 values) when the best sits on it; 0: the grid only
    search_extend: int = field(default=2, metadata=_check(lambda v: v >= 0, "an integer >= 0"))
    # a rank past the grid is tried only when its cost (rank^2: ALS work per rating) is at most this
    # multiple of the summed cost of the candidates already scored (ranks 10, 50 x 3 regs: a rank-100
    # probe costs 4x a rank-50 fit, more than the whole grid, and is not tried; 0: never)
    search_rank_budget: float = field(default=1.0, metadata=_check(lambda v: v >= 0, "a number >= 0"))
    # when the ratings fitted hold at most this many rows, the bias sweeps run on the driver (numpy,
    # the same updates; one Spark job to collect instead of ~3 per sweep); 0: always in Spark
    local_bias_max_ratings: int = field(
        default=2_000_000, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: always Spark)"))
    # independent ALS fits (a search's grid) run this many at once, each submitting its own Spark
    # jobs, when the search's fit split holds at most parallel_max_ratings ratings (on small data a
    # fit's wall time is mostly per-job latency); 1: one at a time
    parallel_fits: int = field(default=2, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    parallel_max_ratings: int = field(
        default=1_000_000, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: never parallel)"))
    # λ_u and λ_i grids of the biases: every pair is fitted in the same sweeps, the best on validation
    bias_reg_user: tuple[float, ...] = field(
        default=(2.0, 5.0, 15.0), metadata=_check(lambda v: len(v) > 0 and all(r >= 0 for r in v),
                                                  "a non-empty list of numbers >= 0"))
    bias_reg_item: tuple[float, ...] = field(
        default=(1.0, 3.0, 10.0), metadata=_check(lambda v: len(v) > 0 and all(r >= 0 for r in v),
                                                  "a non-empty list of numbers >= 0"))
    # the most item-then-user sweeps per bias fit; they stop once no user bias moves by > bias_tol
    bias_sweeps: int = field(default=15, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    bias_tol: float = field(default=1e-3, metadata=_check(lambda v: v >= 0, "a number >= 0"))
    iters: int = field(default=10, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    # ALS iterations of each search candidate, at most iters; 0: iters. Fewer make the search
    # cheaper, but ALS on the bias residuals converges slower than plain ALS, so they understate
    # ALS+bias on validation (10M Prize-shaped, 1M sample, λ 0.025: 0.614 at 5 vs 0.583 at 10)
    search_iters: int = field(default=0, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: iters)"))
    # the training RMSEs (the overfit check) and the aligned model's γ are measured on a random
    # sample of about this many training ratings (each a single figure: ±0.1 % at 1M); 0: on all
    train_score_ratings: int = field(
        default=1_000_000, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: all of them)"))
    # the most bias/ALS alternation rounds; validation picks how many (a round can fit worse)
    rounds: int = field(default=1, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    checkpoint_interval: int = field(default=5, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    # MLlib ALS user/item blocks; 0: one per core, and at least one per als_block_ratings ratings
    # (each block's arrays are built in one task: 98.6M training ratings in 2 blocks, and 88.7M in 9,
    # ran out of a 6 GB heap beside the job's cached splits)
    als_blocks: int = field(default=0, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: auto)"))
    als_block_ratings: int = field(
        default=3_000_000, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    # the scale predictions are clipped to; unset: the training ratings' min / max
    rating_min: float | None = None
    rating_max: float | None = None
    model: str = field(default="biased", metadata=_check(lambda v: v in {"biased", "aligned"},
                                                         "one of biased aligned"))
    # WARNING when training RMSE < ratio * validation RMSE
    overfit_ratio: float = field(
        default=0.8, metadata=_check(lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"))
    item_cf_neighbours: int = field(default=50, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    # Jaccard for the item-CF row: items kept per user (0: exact)
    item_cf_max_items_per_user: int = field(
        default=100, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: exact, no cap)"))
    # the item-CF rows are scored on the test rows of a seeded user sample of about this many (0:
    # every test row): their join reads only those users' training ratings (100M Prize-shaped,
    # 1.4M probe rows against 98.6M training ratings: 106 s).  100k rows: ±0.2 % on the RMSE
    item_cf_test_ratings: int = field(
        default=100_000, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: every test row)"))


@dataclass(frozen=True)
class TumorSettings:
    """Tumor CNN: image preparation (``jobs/tumor_prepare.py``) and distributed training
    (``jobs/tumor_train.py``)."""

    # class folder name (matched case-insensitively) -> label (0: no tumor, 1: tumor)
    classes: Mapping[str, str] = field(
        default_factory=lambda: {"yes": "1", "no": "0"},
        metadata=_check(lambda v: len(v) > 0 and set(v.values()) <= {"0", "1"},
                        "a non-empty mapping of folder name to label 0 or 1"))
    # px, square, after padding (128: as good a validation BER as 175 on the real set, ~half the time)
    size: int = field(default=128, metadata=_check(lambda v: 8 <= v <= 2048, "an integer in [8, 2048]"))
    test_fraction: float = field(
        default=0.33, metadata=_check(lambda v: 0.0 < v < 1.0, "a number in (0, 1)"))
    # of the images outside the test split: the validation split (epoch and threshold are chosen on it)
    validation_fraction: float = field(
        default=0.15, metadata=_check(lambda v: 0.0 < v < 1.0, "a number in (0, 1)"))
    # crop each scan to the head (largest bright component + margin) before pad/resize
    crop: bool = True
    # margin around the head's bounding box, as a fraction of its longer side
    crop_margin: float = field(default=0.04, metadata=_check(lambda v: 0 <= v <= 1, "a number in [0, 1]"))
    # per-image intensity: the head's 1st..99th percentile -> 0..1
    normalize: bool = True
    # near-duplicates: 64-bit perceptual hashes within this Hamming distance share a group, so never
    # straddle a split (0: byte-identical copies only)
    near_duplicate_bits: int = field(default=6, metadata=_check(lambda v: 0 <= v <= 16, "an integer in [0, 16]"))
    seed: int = 42
    raw_max_chars: int = field(default=200, metadata=_check(lambda v: v >= 16, "an integer >= 16"))
    # barrier tasks = MultiWorkerMirroredStrategy workers
    workers: int = field(default=2, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    threads_per_worker: int = field(
        default=0, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: cores / workers)"))
    epochs: int = field(default=30, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    # per worker; the global batch is batch_size * workers
    batch_size: int = field(default=64, metadata=_check(lambda v: v >= 1, "an integer >= 1 (per worker)"))
    learning_rate: float = field(default=1e-3, metadata=_check(lambda v: v > 0, "a number > 0"))
    l2: float = field(default=1e-3, metadata=_check(lambda v: v >= 0, "a number >= 0"))
    # seed: the original notebook's network (~1.9 GMAC per 175 px scan: minutes per epoch on CPUs);
    # compact: ~30x cheaper, better validation BER on the real development set
    architecture: str = field(default="compact", metadata=_check(lambda v: v in {"seed", "compact", "small"},
                                                              "one of seed compact small"))
    # compact: channels of the first convolution (x2, x4, x8 in the next blocks)
    width: int = field(default=16, metadata=_check(lambda v: 4 <= v <= 256, "an integer in [4, 256]"))
    # compact: batch normalization after each convolution (synchronized over the workers)
    batch_norm: bool = True
    # constant, or cosine: decays per step to 2% of learning_rate at the last epoch
    lr_schedule: str = field(default="cosine", metadata=_check(lambda v: v in {"constant", "cosine"},
                                                                  "one of constant cosine"))
    # random flips and the changes below, drawn per image in the train step (false: none of them)
    augment: bool = True
    max_rotation_deg: float = field(
        default=10.0, metadata=_check(lambda v: 0 <= v <= 180, "a number of degrees in [0, 180]"))
    # shift by up to this fraction of the side, per axis
    max_shift: float = field(default=0.0, metadata=_check(lambda v: 0 <= v <= 0.5, "a fraction in [0, 0.5]"))
    # scale by a factor in [1 - max_zoom, 1 + max_zoom]
    max_zoom: float = field(default=0.0, metadata=_check(lambda v: 0 <= v <= 0.5, "a fraction in [0, 0.5]"))
    # add up to +-max_brightness to the [0, 1] pixels (then clip)
    max_brightness: float = field(default=0.0, metadata=_check(lambda v: 0 <= v <= 1, "a number in [0, 1]"))
    class_weights: bool = True
    # early stopping: stop after this many epochs without a better validation BER (0: off)
    patience: int = field(default=10, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: off)"))
    # test only: "RANK:EPOCH:STEP" makes that worker kill itself (SIGKILL) at that step
    fault_kill: str = ""
    # local mode also needs, under spark.extra: spark.driver.resource.gpu.amount: "1" and
    # spark.driver.resource.gpu.discoveryScript: lib/batchml/tumor/gpu_discovery.sh
    use_gpu: bool = False
    port_range: str = field(
        default="0", metadata=_check(lambda v: v.strip() == "0" or (
            len(v.split("-")) == 2 and all(p.strip().isdigit() for p in v.split("-"))
            and 0 < int(v.split("-")[0]) <= int(v.split("-")[1]) < 65536),
            "0 (any free port) or LOW-HIGH, e.g. 20000-20100"))
    grid_images: int = field(default=36, metadata=_check(lambda v: v >= 0, "an integer >= 0"))


@dataclass(frozen=True)
class SimilaritySettings:
    """Similarity job (``jobs/similarity.py``): metric, top-K, the heavy-user cap and salting."""

    metric: str = field(default="jaccard", metadata=_check(
        lambda v: v in {"jaccard", "cosine", "cosine_binary", "pearson"},
        "one of jaccard cosine cosine_binary pearson"))
    top_k: int = field(default=20, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    # drop pairs with fewer co-occurring users
    min_support: int = field(default=2, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    # heavy users keep this many items (hash-sampled); 0: no cap
    max_items_per_user: int = field(
        default=500, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: no cap)"))
    # users above salt_min_items are spread over this many tasks
    salt_buckets: int = field(default=8, metadata=_check(lambda v: v >= 1, "an integer >= 1 (1: off)"))
    # salting pays only past the ~5,800-item partial-product chunk
    salt_min_items: int = field(
        default=5800, metadata=_check(lambda v: v >= 0, "an integer >= 0 (users above it are salted)"))
    seed: int = 42
    # true: no cap, min_support 1 (for checks)
    exact: bool = False
    # true: user-user similarity (same code, roles swapped)
    users: bool = False
    # up to this many input ratings, the capped ratings are broadcast to every task, and each task
    # scores its block of items against all (no shuffle of pairs); more take the shuffle of partial
    # XᵀX sums; 0: always the shuffle. Both give the same table. Each Python worker holds the capped
    # ratings: ~16 bytes each for jaccard / cosine_binary, ~60 for cosine / pearson (the full Prize
    # dump: ~1.3 GB per worker). At 30M ratings the broadcast path took 58 s, the shuffle 762 s
    broadcast_max_ratings: int = field(
        default=120_000_000, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: always the shuffle)"))
    # with the broadcast path, when the capped ratings generate at most this many pairs (sum of
    # n(n-1)/2 over users; ~1 s of numpy per 25M), the driver scores all items itself: starting the
    # tasks' Python workers costs seconds more than such work; 0: always in tasks
    driver_max_pairs: int = field(
        default=50_000_000, metadata=_check(lambda v: v >= 0, "an integer >= 0 (0: always in tasks)"))
    # item-CF RMSE on a held-out split (e.g. 0.1): the whole pipeline runs again on the rest, so it
    # is opt-in; the factorize job reports an item-CF RMSE row beside its models. 0: no evaluation
    holdout_fraction: float = field(
        default=0.0, metadata=_check(lambda v: 0.0 <= v < 1.0, "a number in [0, 1) (0: no evaluation)"))
    # "because you liked X": ratings counted as liked
    liked_min_rating: float = 4.0


@dataclass(frozen=True)
class RecommendSettings:
    """Recommendation job (``jobs/recommend.py``) and query command: top-N, popular lists, fold-in,
    ranking evaluation."""

    top_n: int = field(default=10, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    min_ratings: int = field(
        default=0, metadata=_check(lambda v: v >= 0, "an integer >= 0 (items with fewer are never recommended)"))
    # popular list: shrunk mean = (n*mean + m*mu) / (n + m), m = this
    prior_strength: float = field(
        default=25.0, metadata=_check(lambda v: v >= 0, "a number >= 0 (pseudo-ratings at the global mean)"))
    # ranking metrics: a held-out item rated >= this is relevant
    relevance_threshold: float = 4.0
    # fold-in ridge on p_u: reg * n_ratings (ALS-WR scaling)
    fold_in_reg: float = field(
        default=0.1, metadata=_check(lambda v: v > 0, "a number > 0 (times the number of ratings, as ALS)"))
    # fold-in ridge on b_u
    fold_in_bias_reg: float = field(default=10.0, metadata=_check(lambda v: v >= 0, "a number >= 0"))
    # users scored per numpy matrix product (at most: see score_memory_mb)
    user_block_size: int = field(default=1024, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    # memory one scoring task may use for a block's score matrices: the block shrinks to
    # score_memory_mb / (items x bytes per score) users when the catalogue is large
    score_memory_mb: int = field(default=512, metadata=_check(lambda v: v >= 1, "an integer >= 1 (MiB)"))
    # random baseline
    seed: int = 42
    # ranking metrics on the held-out test rows
    evaluate: bool = True
    # write recommendations_readable (source ids, titles)
    readable: bool = True


@dataclass(frozen=True)
class ReviewsSettings:
    """Review models (``jobs/reviews.py``): the hashed split, the text features, the validation grids."""

    # verified: is the review a verified purchase (BER); rating: the stars from the words (RMSE)
    task: str = field(default="verified", metadata=_check(lambda v: v in {"verified", "rating"},
                                                          "one of verified rating"))
    seed: int = 42
    # of all reviews, by a hash of (seed, review_id); the rest is the training split
    validation_fraction: float = field(
        default=0.1, metadata=_check(lambda v: 0.0 < v < 0.5, "a number in (0, 0.5)"))
    test_fraction: float = field(default=0.1, metadata=_check(lambda v: 0.0 < v < 0.5, "a number in (0, 0.5)"))
    # the longest n-gram of the text features (1: words only), a grid searched on validation
    ngrams: tuple[int, ...] = field(
        default=(1, 2), metadata=_check(lambda v: len(v) > 0 and all(1 <= n <= 3 for n in v),
                                        "a non-empty list of integers in [1, 3]"))
    # the models' L2 (elastic net) strength, a grid searched on validation (ours and the top-words
    # baseline); the loss is a mean over reviews, so the best strength falls as the data grows
    regs: tuple[float, ...] = field(
        default=(0.0, 1e-5, 1e-4, 1e-3), metadata=_check(lambda v: len(v) > 0 and all(r >= 0 for r in v),
                                                         "a non-empty list of numbers >= 0"))
    # 0: L2, 1: L1
    elastic_net: float = field(default=0.0, metadata=_check(lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"))
    # the largest vocabulary kept (most frequent terms first), and a term's least document count
    vocab_size: int = field(default=1 << 18, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    min_df: float = field(default=2.0, metadata=_check(lambda v: v >= 0, "a number >= 0"))
    # the rating baseline's vocabulary: the most frequent words only
    top_words: int = field(default=100, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    max_iter: int = field(default=100, metadata=_check(lambda v: v >= 1, "an integer >= 1"))
    # each review's TF-IDF vector scaled to unit L2 norm
    normalize: bool = True
    # MLlib standardizes features before the penalty (its default; it lifts rare terms)
    standardize: bool = False
    # verified: weight each class by n / (2 n_class) in training
    class_weights: bool = True
    # keep no / not / nor ... out of the stop words, so "not good" stays a bigram
    keep_negations: bool = True
    # rating: also score ours + the item bias (fitted on the training split, leave-one-out there)
    item_bias: bool = True
    item_bias_reg: float = field(default=5.0, metadata=_check(lambda v: v >= 0, "a number >= 0"))


@dataclass(frozen=True)
class Config:
    """All settings of a run."""

    spark: SparkSettings = field(default_factory=SparkSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    generate: GenerateSettings = field(default_factory=GenerateSettings)
    factorize: FactorizeSettings = field(default_factory=FactorizeSettings)
    tumor: TumorSettings = field(default_factory=TumorSettings)
    similarity: SimilaritySettings = field(default_factory=SimilaritySettings)
    recommend: RecommendSettings = field(default_factory=RecommendSettings)
    reviews: ReviewsSettings = field(default_factory=ReviewsSettings)

    def replace(self, **overrides: Any) -> "Config":
        """Return a copy with dotted overrides applied (``cfg.replace(**{"spark.master": "local[2]"})``);
        values are typed and checked like ``--set`` (lists as ``"5,20"`` or a Python sequence)."""
        return build_config(_to_dict(self), [f"{k}={_as_text(v)}" for k, v in overrides.items()])


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: _to_dict(v) for k, v in obj.items()}
    return obj


def as_dict(cfg: Config) -> dict:
    """Plain nested dict of a config (for logging and metrics files)."""
    return _to_dict(cfg)


class _Text(str):
    """An override's raw text (``--set key=value`` or a job flag): typed by the field it sets."""


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _parse_text(text: str, typ: Any, name: str) -> Any:
    """Turn an override's text into a value of the field's type (no YAML: ``#`` is just a character).

    Lists are comma-separated (brackets optional); a mapping is a YAML flow mapping
    (``{spark.foo: bar}``); an optional field takes ``null`` or ``none``.
    """
    origin = typing.get_origin(typ)
    stripped = text.strip()
    if origin in (typing.Union, types.UnionType):
        if stripped.lower() in {"", "null", "none"}:
            return None
        typ = next(a for a in typing.get_args(typ) if a is not type(None))
        origin = typing.get_origin(typ)
    if typ is bool:
        if stripped.lower() in _TRUE | _FALSE:
            return stripped.lower() in _TRUE
        raise ConfigError(f"setting '{name}' must be true or false, got {text!r}")
    if typ in (int, float):
        try:
            return typ(stripped)
        except ValueError:
            what = "an integer" if typ is int else "a number"
            raise ConfigError(f"setting '{name}' must be {what}, got {text!r}") from None
    if origin in (tuple, list):
        (item_t, *_) = typing.get_args(typ) or (str,)
        inner = stripped[1:-1] if stripped[:1] + stripped[-1:] in ("[]", "()") else stripped
        return tuple(_parse_text(part, item_t, name) for part in inner.split(",") if part.strip())
    if origin in (collections.abc.Mapping, dict) or typ is Mapping:
        try:
            return yaml.safe_load(text) if stripped else {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"setting '{name}': cannot parse mapping {text!r}: {exc}") from None
    if dataclasses.is_dataclass(typ):
        raise ConfigError(f"'{name}' is a section: set one of its keys ({name}.KEY=VALUE)")
    return str(text)


def _flat_strings(mapping: Mapping, prefix: str = "") -> dict[str, str]:
    """A mapping's leaves as ``{"a.b": "v"}`` strings: ``--set spark.extra.spark.ui.enabled=true``
    nests like a YAML block would, and both mean the key ``spark.ui.enabled``."""
    out: dict[str, str] = {}
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_strings(value, full + "."))
        else:
            out[full] = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _coerce(value: Any, typ: Any, name: str) -> Any:
    if isinstance(value, _Text):
        value = _parse_text(value, typ, name)
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], name)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"setting '{name}' must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"setting '{name}' must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"setting '{name}' must be a number, got {value!r}")
        return float(value)
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"setting '{name}' must be a string, got {value!r}")
        return "" if value is None else str(value)
    if origin in (collections.abc.Mapping, dict) or typ is Mapping:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"setting '{name}' must be a mapping, got {value!r}")
        return types.MappingProxyType(_flat_strings(value))
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            value = [value]
        (item_t, *_) = typing.get_args(typ) or (str,)
        return tuple(_coerce(v, item_t, name) for v in value)
    if dataclasses.is_dataclass(typ):
        return _build_section(typ, value, name)
    raise ConfigError(f"setting '{name}' has an unsupported type {typ!r}")  # pragma: no cover


def _build_section(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"section '{prefix}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown setting '{where}{unknown[0]}' (known in {prefix or 'the top level'}: "
            f"{', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        full = f"{prefix}.{name}" if prefix else name
        if name not in data:
            continue
        value = _coerce(data[name], hints[name], full)
        check = f.metadata.get("check")
        if check is not None and value is not None and not check(value):
            raise ConfigError(f"setting '{full}' must be {f.metadata['what']}, got {data[name]!r}")
        kwargs[name] = value
    return cls(**kwargs)


def _apply_override(data: dict, item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"override {item!r} has an empty setting name")
    value = _Text(raw)
    node = data
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"setting '{key}': '{p}' is not a section")
        node = child
    node[parts[-1]] = value


def build_config(data: Mapping | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build a :class:`Config` from a nested mapping plus ``key=value`` overrides."""
    data = _to_dict(dict(data or {}))
    for item in overrides:
        _apply_override(data, item)
    return _build_section(Config, data, "")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config file (default ``conf/local.yaml``) and apply overrides."""
    path = Path(path) if path else DEFAULT_CONF
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
    return build_config(data, overrides)

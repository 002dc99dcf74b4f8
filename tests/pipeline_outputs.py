"""Outputs of a small run of the whole pipeline, made with the library functions the jobs call:
a generated Netflix-format dump ingested (probe removed), item similarity, factorization with its
RMSE table and validation grid, recommendations with a fold-in, and a tumor output dir (metrics,
history, predictions and scans written in the tumor job's layout from generated scores, so no
TensorFlow run is needed).  The notebooks test runs every notebook on them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batchml.config import as_dict, build_config
from batchml.factorize import run_factorize
from batchml.ingest import ingest
from batchml.recommend.job import run_recommend
from batchml.schema import METRICS_FILE
from batchml.similarity.job import run_similarity
from batchml.synth.netflix import write_netflix_dump
from batchml.tumor import schema as S
from batchml.tumor.evaluate import evaluate

FOLD_IN = ('title,rating\n"The Lord of the Rings: The Fellowship of the Ring",5\n'
           '"Battlestar Galactica: Season 1",5\n"WWE: WrestleMania XX",1\n')


def build_rating_outputs(spark, test_config, base: Path) -> dict[str, str]:
    """Dataset, similarity, model and recommendation dirs under ``base``; their env variables."""
    cfg = build_config({**as_dict(test_config), "ingest": {"remove_probe": True},
                        "similarity": {"top_k": 10, "max_items_per_user": 40, "holdout_fraction": 0.0},
                        "factorize": {"test": "probe", "ranks": [2, 3], "regs": [0.05, 0.1],
                                      "search_extend": 0, "bias_reg_user": [5.0],
                                      "bias_reg_item": [3.0], "bias_sweeps": 2, "iters": 3,
                                      "rounds": 2, "als_blocks": 2, "item_cf_neighbours": 10},
                        "recommend": {"top_n": 10}})
    raw = base / "raw"
    write_netflix_dump(raw, 20_000, seed=3, plant=1, taste=1.5)
    out = {k: str(base / v) for k, v in (("DATASET", "netflix"), ("SIMILARITY", "similarity"),
                                         ("MODEL", "model"), ("RECS", "recommend"))}
    ingest(spark, cfg, "netflix", str(raw), out["DATASET"])
    run_similarity(spark, cfg, dataset=out["DATASET"], output=out["SIMILARITY"])
    run_factorize(spark, cfg, dataset=out["DATASET"], output=out["MODEL"],
                  ground_truth=str(raw / "ground_truth"))
    (base / "new_user.csv").write_text(FOLD_IN)
    run_recommend(spark, cfg, model=out["MODEL"], dataset=out["DATASET"], output=out["RECS"],
                  fold_in_file=str(base / "new_user.csv"))
    return out


def build_tumor_outputs(base: Path, *, size: int = 16, n: int = 60, epochs: int = 4) -> str:
    """A tumor output dir (metrics.json with its per-epoch history, train_history.json,
    predictions/) and the shards it names (images/ with pixels), from generated scores."""
    rng = np.random.default_rng(0)
    labels = (np.arange(n) // 2) % 2
    split = np.array([S.VALIDATION, S.TEST] * (n // 2))
    prob = np.clip(0.5 + (labels - 0.5) * 0.6 + rng.normal(0, 0.25, n), 0.0, 1.0)
    hashes = [f"{k:064x}" for k in range(n)]
    shards, out = base / "tumor_shards", base / "tumor_model"
    pixels = [np.clip(rng.normal(0.3 + 0.3 * y, 0.1, size * size), 0, 1).astype(np.float32).tolist()
              for y in labels]
    for d, table in ((shards / S.IMAGES, {S.HASH_COL: hashes, S.LABEL_COL: labels, S.SPLIT_COL: split,
                                          S.PIXELS_COL: pixels, S.SIZE_COL: [size] * n}),
                     (out / S.PREDICTIONS, {S.PATH_COL: [f"img{k}.png" for k in range(n)],
                                            S.LABEL_COL: labels, S.HASH_COL: hashes,
                                            S.SPLIT_COL: split, S.PROB_COL: prob})):
        d.mkdir(parents=True)
        pq.write_table(pa.table(table), d / "part-0.parquet")
    va, te = split == S.VALIDATION, split == S.TEST
    metrics = evaluate(labels[va], prob[va], labels[te], prob[te])
    history = [{"epoch": e + 1, "loss": 0.7 / (e + 1), "seconds": 1.0, "images_per_s": 50.0,
                "val_ber": 0.4 / (e + 1), "val_auc": 0.6 + 0.08 * e} for e in range(epochs)]
    metrics.update(data=str(shards), size=size, history=history)
    (out / METRICS_FILE).write_text(json.dumps(metrics))
    (out / S.HISTORY_FILE).write_text(json.dumps({"workers": [{"history": history}]}))
    return str(out)

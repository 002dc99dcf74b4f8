# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Review models: verified purchases (BER) and the rating from the words
# Reads the output dirs of `jobs/reviews.py`: `$REVIEWS_VERIFIED` (default
# `data/demo/reviews_verified`, `--task verified`) and `$REVIEWS_RATING` (default
# `data/demo/reviews_rating`, `--task rating`). From `metrics.json`: every model's validation and
# test figures, the test ROC curves and the thresholds chosen on validation; from `predictions/`
# (the test split scored by every model): the test BER at every threshold; from `term_weights/`:
# the words with the largest positive and negative weights in the rating model.
# Figures go to `$FIGURES` (default `data/demo/figures`).

# %%
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

VERIFIED = Path(os.environ.get("REVIEWS_VERIFIED", "data/demo/reviews_verified"))
RATING = Path(os.environ.get("REVIEWS_RATING", "data/demo/reviews_rating"))
FIGURES = Path(os.environ.get("FIGURES", "data/demo/figures"))
FIGURES.mkdir(parents=True, exist_ok=True)


def read_metrics(path, task):
    f = path / "metrics.json"
    if not f.exists():
        print(f"note: no metrics.json in {path}: run jobs/reviews.py --task {task}; nothing to plot for it")
        return None
    return json.loads(f.read_text())


verified = read_metrics(VERIFIED, "verified")
rating = read_metrics(RATING, "rating")


def table(m, figures):
    rows = {m["labels"][k]: {f"{split} {f}": m[split][k][f] for split in ("validation", "test") for f in figures}
            for k in m["order"]}
    return pd.DataFrame(rows).T


# %%
def ber_by_threshold(y, s):
    """Thresholds (predict positive where score > t) and the BER at each."""
    order = np.argsort(s)
    s, y = s[order], y[order]
    fn = np.concatenate([[0], np.cumsum(y == 1)])
    tn = np.concatenate([[0], np.cumsum(y != 1)])
    ber = (fn / max((y == 1).sum(), 1) + ((y != 1).sum() - tn) / max((y != 1).sum(), 1)) / 2
    return np.concatenate([[s[0] - 1e-9], s]), ber


if verified is not None:
    z = verified["sizes"]
    print(f"train {z['train']:,} / validation {z['validation']:,} / test {z['test']:,} reviews; chosen: "
          f"{verified['chosen']['ours']}")
    print(table(verified, ("ber", "auc")).round(4).to_string())
    pred_dir = VERIFIED / "predictions"
    pred = pd.read_parquet(pred_dir) if pred_dir.exists() else None
    fig, axes = plt.subplots(1, 3 if pred is not None else 2, figsize=(16 if pred is not None else 11, 4.5))
    for k, name in enumerate(verified["order"]):
        t = verified["test"][name]
        c = t["confusion"]
        axes[0].plot(t["roc"]["fpr"], t["roc"]["tpr"], c=f"C{k}", label=f"{verified['labels'][name]} (AUC {t['auc']:.3f})")
        axes[0].scatter([c["fp"] / max(c["fp"] + c["tn"], 1)], [c["tp"] / max(c["tp"] + c["fn"], 1)], c=f"C{k}",
                        zorder=3)
    axes[0].plot([0, 1], [0, 1], ls=":", c="grey")
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate",
                title="ROC, test split (dots: threshold from validation)")
    axes[0].legend(fontsize=8, loc="lower right")
    x = np.arange(len(verified["order"]))
    for j, split in enumerate(("validation", "test")):
        bars = axes[1].bar(x + 0.38 * (j - 0.5), [verified[split][k]["ber"] for k in verified["order"]], 0.38,
                           label=split)
        axes[1].bar_label(bars, fmt="%.3f", fontsize=8)
    axes[1].set_xticks(x, [verified["labels"][k].split(":")[0] for k in verified["order"]])
    axes[1].set(ylabel="balanced error rate", title="BER at the validation threshold")
    axes[1].legend(fontsize=8)
    if pred is not None:
        for k, name in enumerate(verified["order"]):
            ts, ber = ber_by_threshold(pred["label"].to_numpy(), pred[f"{name}_score"].to_numpy())
            axes[2].plot(ts, ber, c=f"C{k}", label=name)
            axes[2].axvline(verified["chosen"][name]["threshold"], c=f"C{k}", ls="--", lw=1)
        axes[2].set(xlabel="threshold on P(verified)", ylabel="test BER", title="test BER by threshold (dashed: chosen)",
                    ylim=(0, 0.6))
        axes[2].legend(fontsize=8)
    else:
        print(f"note: no predictions table in {VERIFIED}")
    fig.tight_layout()
    fig.savefig(FIGURES / "reviews_verified.png", dpi=90)
    print("wrote", FIGURES / "reviews_verified.png")

# %%
if rating is not None:
    z = rating["sizes"]
    print(f"train {z['train']:,} / validation {z['validation']:,} / test {z['test']:,} reviews; chosen: "
          f"top100 {rating['chosen']['top100']}, ours {rating['chosen']['ours']}")
    print(table(rating, ("rmse", "mae")).round(4).to_string())
    if "item_bias_helps" in rating:
        print("the item bias as a feature helps:", rating["item_bias_helps"])
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(rating["order"]))
    for j, split in enumerate(("validation", "test")):
        bars = ax.bar(x + 0.38 * (j - 0.5), [rating[split][k]["rmse"] for k in rating["order"]], 0.38, label=split)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(x, [rating["labels"][k] for k in rating["order"]])
    ax.set(ylabel="RMSE", title="Rating from the review text: RMSE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / "reviews_rating.png", dpi=90)
    print("wrote", FIGURES / "reviews_rating.png")

# %%
weights_dir = RATING / "term_weights"
if rating is not None and not weights_dir.exists():
    print(f"note: no term_weights table in {RATING}")
if rating is not None and weights_dir.exists():
    w = pd.read_parquet(weights_dir).sort_values("weight")
    k = min(15, len(w) // 2)
    shown = pd.concat([w.head(k), w.tail(k)])
    print(shown[["term", "weight", "idf"]].round(3).to_string(index=False))
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(shown) + 1.2))
    ax.barh(shown["term"], shown["weight"], color=np.where(shown["weight"] > 0, "C2", "C3"))
    unit = "L2-normalized TF-IDF" if rating.get("settings", {}).get("normalize") else "TF-IDF"
    ax.set(xlabel=f"weight (stars per unit of {unit})",
           title=f"Rating model: the {k} most negative and most positive terms")
    fig.tight_layout()
    fig.savefig(FIGURES / "reviews_words.png", dpi=90)
    print("wrote", FIGURES / "reviews_words.png")

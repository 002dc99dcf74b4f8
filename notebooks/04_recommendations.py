# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Recommendations: are they better than the popular list?
# Reads the output of `jobs/recommend.py` (`$RECS`, default `data/demo/recommend`): ranking metrics
# of the model's top-k against the popular list and a random list on held-out rows, coverage and
# popularity of what each list recommends, the popular list itself (shrunk mean vs raw mean: why
# obscure titles with two 5-star ratings no longer win), and the fold-in example.
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

RECS = Path(os.environ.get("RECS", "data/demo/recommend"))
FIGURES = Path(os.environ.get("FIGURES", "data/demo/figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
metrics = json.loads((RECS / "metrics.json").read_text()) if (RECS / "metrics.json").exists() else None
if metrics is None:
    print(f"note: no metrics.json in {RECS}: run jobs/recommend.py; nothing to plot")

# %%
ev = (metrics or {}).get("evaluation")
if metrics is not None and not ev:
    print("note: the run has no ranking evaluation (--no-evaluate or no test set):", metrics.get("notes"))
if ev:
    lists = pd.DataFrame(ev["lists"]).T
    print(f"held-out rows: {ev['test']} ({ev['test_rows']:,} rows, {ev['test_users']:,} users), k = {ev['k']}")
    print(lists.to_string())
    k = ev["k"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    names = ["precision", "recall", "ndcg", "map"]
    x = np.arange(len(names))
    for j, (name, row) in enumerate(lists.iterrows()):
        axes[0].bar(x + (j - 1) * 0.27, [float(row[m] or 0) for m in names], width=0.27, label=name)
    axes[0].set_xticks(x, [f"{m}@{k}" for m in names])
    axes[0].set(title="Ranking metrics on held-out rows")
    axes[0].legend()
    axes[1].bar(lists.index, lists["coverage"].astype(float))
    axes[1].set(title="Catalogue coverage of the lists", ylabel="share of items recommended")
    axes[2].bar(lists.index, lists["mean_popularity"].astype(float))
    axes[2].set(title="Mean popularity of what is recommended", ylabel="training ratings per item")
    fig.tight_layout()
    fig.savefig(FIGURES / "recommendations_metrics.png", dpi=90)
    print("wrote", FIGURES / "recommendations_metrics.png")

# %%
if (RECS / "popular").exists():
    popular = pd.read_parquet(RECS / "popular")
    print(popular.sort_values("rank").head(10)[["rank", "title", "n_ratings", "mean_rating",
                                                 "shrunk_mean"]].to_string(index=False))
    raw_top = popular.sort_values(["mean_rating", "n_ratings"], ascending=False).head(10)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    axes[0].scatter(popular["n_ratings"], popular["mean_rating"], s=6, alpha=0.4, label="raw mean")
    axes[0].scatter(popular["n_ratings"], popular["shrunk_mean"], s=6, alpha=0.4, label="shrunk mean")
    axes[0].set(xscale="log", xlabel="ratings of the item", ylabel="mean rating",
                title="Few ratings: the shrunk mean pulls toward the global mean")
    axes[0].legend()
    top = popular.sort_values("rank").head(10)
    axes[1].scatter(raw_top["n_ratings"], raw_top["mean_rating"], marker="x", c="C3",
                    label="top 10 by raw mean")
    axes[1].scatter(top["n_ratings"], top["shrunk_mean"], c="C1", label="top 10 by shrunk mean")
    axes[1].set(xscale="log", xlabel="ratings of the item", ylabel="score",
                title="Who wins the popular list")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(FIGURES / "recommendations_popular.png", dpi=90)
    print("wrote", FIGURES / "recommendations_popular.png")
elif metrics is not None:
    print(f"note: no popular table in {RECS}")

# %%
fold = (metrics or {}).get("fold_in")
if fold:
    rated = "; ".join(f"{r['title']} = {r['rating']:g}" for r in fold["rated"])
    top = pd.DataFrame(fold["top"])
    print("folded in:", rated)
    print(top.to_string(index=False))
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(top) + 1.5))
    ax.barh([str(t)[:50] for t in top["title"]][::-1], top["score"][::-1])
    ax.set(xlabel="score", title=f"A new user folded in (b_u = {fold['bias']:+.2f})\nrated: {rated}"[:160])
    fig.tight_layout()
    fig.savefig(FIGURES / "recommendations_fold_in.png", dpi=90)
    print("wrote", FIGURES / "recommendations_fold_in.png")
elif metrics is not None:
    print("note: the run had no --fold-in file")

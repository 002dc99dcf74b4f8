# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Item similarity: which titles come up together
# Reads the output of `jobs/similarity.py` (`$SIMILARITY`, default `data/demo/similarity`) and the
# dataset's titles (`$DATASET`). Shows the most similar titles of a few well-known (most rated)
# titles as a table, how similarity and co-count are distributed and relate, and what the heavy-user
# cap cost (`metrics.json`). Figures go to `$FIGURES` (default `data/demo/figures`).

# %%
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402

DATASET = Path(os.environ.get("DATASET", "data/demo/netflix"))
SIMILARITY = Path(os.environ.get("SIMILARITY", "data/demo/similarity"))
FIGURES = Path(os.environ.get("FIGURES", "data/demo/figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
HAVE = (SIMILARITY / "similar_items").exists()
if not HAVE:
    print(f"note: no similar_items table in {SIMILARITY}: run jobs/similarity.py; nothing to plot")

# %%
if HAVE:
    items = pd.read_parquet(DATASET / "items", columns=["item_idx", "item_id", "title"])
    counts = (ds.dataset(DATASET / "ratings", format="parquet").to_table(columns=["item_idx"])
              .group_by("item_idx").aggregate([("item_idx", "count")]).to_pandas()
              .rename(columns={"item_idx_count": "n_ratings"}))
    sim = pd.read_parquet(SIMILARITY / "similar_items",
                          columns=["item_idx", "other_idx", "similarity", "co_count", "rank"])
    well_known = (counts[counts["item_idx"].isin(sim["item_idx"])]
                  .nlargest(4, "n_ratings")["item_idx"].tolist())
    titles = items.set_index("item_idx")["title"].fillna("(no title)")
    rows = []
    for i in well_known:
        top = sim[sim["item_idx"] == i].sort_values("rank").head(5)
        for r in top.itertuples():
            rows.append({"title": titles.get(i, str(i)), "rank": r.rank,
                         "similar title": titles.get(r.other_idx, str(r.other_idx)),
                         "similarity": round(r.similarity, 3), "co-count": r.co_count})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))

# %%
if HAVE:
    fig, ax = plt.subplots(figsize=(12, 0.32 * len(table) + 1))
    ax.axis("off")
    cells = [[str(v)[:60] for v in row] for row in table.itertuples(index=False)]
    tab = ax.table(cellText=cells or [["-"] * 5], colLabels=list(table.columns) or ["-"] * 5,
                   loc="center", cellLoc="left")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.auto_set_column_width(list(range(5)))
    ax.set_title("Most similar titles of the most rated titles")
    fig.tight_layout()
    fig.savefig(FIGURES / "similarity_top_titles.png", dpi=90)
    print("wrote", FIGURES / "similarity_top_titles.png")

# %%
if HAVE:
    metrics_path = SIMILARITY / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    report = metrics.get("similarity", {})
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    axes[0, 0].hist(sim["similarity"], bins=40)
    axes[0, 0].set(title="Similarity of the stored neighbours", xlabel="similarity", ylabel="pairs")
    axes[0, 1].hist(sim["co_count"], bins=40, log=True)
    axes[0, 1].set(title="Co-count (users who rated both)", xlabel="co-count", ylabel="pairs (log)")
    axes[1, 0].scatter(sim["co_count"], sim["similarity"], s=4, alpha=0.3)
    axes[1, 0].set(title="Similarity vs co-count", xlabel="co-count", ylabel="similarity", xscale="log")
    cap = {k: report[k] for k in ("pairs_without_cap", "pairs_generated") if k in report}
    if cap:
        axes[1, 1].bar(["without the cap", "with the cap"], list(cap.values()))
        axes[1, 1].set(title=f"Item pairs generated (users capped: {report.get('users_capped', '?')})",
                       ylabel="pairs")
    else:
        print("note: metrics.json has no heavy-user cap figures")
        axes[1, 1].axis("off")
    fig.tight_layout()
    fig.savefig(FIGURES / "similarity_distributions.png", dpi=90)
    print("wrote", FIGURES / "similarity_distributions.png")

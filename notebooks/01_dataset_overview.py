# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # A ratings dataset at a glance
# Reads a dataset dir written by `jobs/ingest.py` (default: the demo's `data/demo/netflix`) and plots
# what users look at first: the rating histogram, how skewed user activity and item popularity are,
# ratings over time, and what was rejected. Run as a script (`.venv/bin/python notebooks/01_dataset_overview.py`)
# or pair it with a notebook via jupytext. Figures go to `$FIGURES` (default `data/demo/figures/`).

# %%
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DATASET = Path(os.environ.get("DATASET", "data/demo/netflix"))
FIGURES = Path(os.environ.get("FIGURES", "data/demo/figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
stats = json.loads((DATASET / "_stats.json").read_text())
print({k: stats.get(k) for k in ("ratings", "users", "items", "mean_rating", "date_range", "duplicates_dropped")})

# %%
ratings = pd.read_parquet(DATASET / "ratings", columns=["user_idx", "item_idx", "rating", "ts"])
ratings = ratings.assign(ts=pd.to_datetime(ratings["ts"]))
per_user = ratings.groupby("user_idx").size().sort_values(ascending=False).to_numpy()
per_item = ratings.groupby("item_idx").size().sort_values(ascending=False).to_numpy()

fig, axes = plt.subplots(2, 2, figsize=(11, 8))
hist = ratings["rating"].value_counts().sort_index()
axes[0, 0].bar(hist.index.astype(str), hist.to_numpy())
axes[0, 0].set(title=f"Rating histogram (mean {ratings['rating'].mean():.2f})", xlabel="rating", ylabel="ratings")
axes[0, 1].loglog(np.arange(1, len(per_user) + 1), per_user, label="users")
axes[0, 1].loglog(np.arange(1, len(per_item) + 1), per_item, label="items")
axes[0, 1].set(title="Activity by rank (log-log)", xlabel="rank", ylabel="ratings")
axes[0, 1].legend()
monthly = ratings.dropna(subset=["ts"]).set_index("ts").resample("MS").size()
axes[1, 0].plot(monthly.index, monthly.to_numpy())   # empty when the dump has no dates
axes[1, 0].set(title="Ratings per month", ylabel="ratings")
reasons = {}
for f in stats.get("files", {}).values():
    for r, n in (f.get("rejected_by_reason") or {}).items():
        reasons[r] = reasons.get(r, 0) + n
axes[1, 1].barh(list(reasons) or ["(none)"], list(reasons.values()) or [0])
axes[1, 1].set(title="Rejected lines by reason", xlabel="lines")
fig.tight_layout()
fig.savefig(FIGURES / "ratings_overview.png", dpi=90)
print("wrote", FIGURES / "ratings_overview.png")

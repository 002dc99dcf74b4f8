# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Factorization: the RMSE table, the search, the biases and the item factors
# Reads the model dir of `jobs/factorize.py` (`$MODEL`, default `data/demo/model`): its
# `metrics.json` (the test RMSE of every model beside the baselines, the validation grid, RMSE by
# round) and, through `batchml.model_dir` (the one reader of the model dir), the user and item
# biases and the item factors. Titles come from the model's item table.
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

from batchml.model_dir import read_items_pandas, read_meta, read_users_pandas  # noqa: E402

MODEL = Path(os.environ.get("MODEL", "data/demo/model"))
FIGURES = Path(os.environ.get("FIGURES", "data/demo/figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
meta = read_meta(str(MODEL))
metrics = json.loads((MODEL / "metrics.json").read_text())
print(f"{meta.kind} model, rank {meta.rank}, mu {meta.mu:.3f}, gamma {meta.gamma:.3f}, test {metrics.get('test')}")

# %%
def rmse(v):
    return float(v["rmse"]) if isinstance(v, dict) else float(v)


table = {k: rmse(metrics["table"][k]) for k in metrics.get("order", metrics["table"])}
if metrics.get("floor"):
    table["floor (true model)"] = rmse(metrics["floor"])
print(pd.Series(table, name="test RMSE").to_string())
fig, ax = plt.subplots(figsize=(9, 4))
bars = ax.bar(list(table), list(table.values()), color=[f"C{k}" for k in range(len(table))])
ax.bar_label(bars, fmt="%.4f", fontsize=8)
ax.set(ylabel="RMSE", title=f"Test RMSE ({metrics.get('test')}, {metrics.get('n_test', 0):,} rows)",
       ylim=(0.95 * min(table.values()), 1.02 * max(table.values())))
plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
fig.tight_layout()
fig.savefig(FIGURES / "factorization_rmse.png", dpi=90)
print("wrote", FIGURES / "factorization_rmse.png")

# %%
grid = pd.DataFrame(metrics.get("validation", {}).get("als_bias_grid") or [])
fig, ax = plt.subplots(figsize=(6, 4.5))
if not grid.empty:
    heat = grid.pivot_table(index="rank", columns="reg", values="val_rmse", aggfunc="min")
    im = ax.imshow(heat.to_numpy(), cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(heat.columns)), [f"{c:g}" for c in heat.columns])
    ax.set_yticks(range(len(heat.index)), [str(r) for r in heat.index])
    for (i, j), v in np.ndenumerate(heat.to_numpy()):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.4f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label="validation RMSE")
    ax.set(xlabel="λ (reg)", ylabel="rank", title="ALS+bias validation grid")
else:
    print("note: metrics.json has no validation grid")
    ax.text(0.5, 0.5, "no validation grid", ha="center")
fig.tight_layout()
fig.savefig(FIGURES / "factorization_grid.png", dpi=90)
print("wrote", FIGURES / "factorization_grid.png")

# %%
rounds = pd.DataFrame(metrics.get("rounds") or [])
fig, ax = plt.subplots(figsize=(6, 4))
for col, label in (("train_rmse", "train"), ("eval_rmse", "test")):
    if col in rounds:
        ax.plot(rounds["round"], rounds[col], marker="o", label=label)
ax.set(xlabel="round (biases, then ALS on the residuals)", ylabel="RMSE", title="ALS+bias: RMSE by round")
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "factorization_rounds.png", dpi=90)
print("wrote", FIGURES / "factorization_rounds.png")

# %%
items = read_items_pandas(str(MODEL))
users = read_users_pandas(str(MODEL), ["user_idx", "bias"])
fig, ax = plt.subplots(figsize=(7, 4))
ax.hist(users["bias"].dropna(), bins=50, alpha=0.6, label=f"users ({users['bias'].notna().sum():,})")
ax.hist(items["bias"].dropna(), bins=50, alpha=0.6, label=f"items ({items['bias'].notna().sum():,})")
ax.set(xlabel="bias", ylabel="count", title="Bias distributions")
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "factorization_biases.png", dpi=90)
print("wrote", FIGURES / "factorization_biases.png")

# %%
trained = items[items["features"].notna()]
fig, ax = plt.subplots(figsize=(8, 6))
if meta.rank >= 2 and len(trained) >= 3:
    q = np.stack(trained["features"].to_numpy()).astype(np.float64)
    q -= q.mean(axis=0)
    xy = q @ np.linalg.svd(q, full_matrices=False)[2][:2].T      # the first two principal axes
    ax.scatter(xy[:, 0], xy[:, 1], s=5, alpha=0.4)
    counts = trained["n_ratings"].fillna(0).to_numpy() if "n_ratings" in trained else np.zeros(len(trained))
    for k in np.argsort(-counts)[:12]:
        ax.annotate(str(trained["title"].iloc[k] or trained["item_id"].iloc[k])[:30], xy[k], fontsize=7)
    ax.set(title="Item factors, first two principal components (most rated titles labelled)",
           xlabel="PC 1", ylabel="PC 2")
else:
    print(f"note: rank {meta.rank}: no 2-D projection of item factors")
    ax.text(0.5, 0.5, "no item factors to project", ha="center")
fig.tight_layout()
fig.savefig(FIGURES / "factorization_item_factors.png", dpi=90)
print("wrote", FIGURES / "factorization_item_factors.png")

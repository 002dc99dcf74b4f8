# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Tumor CNN: how training went and what it gets wrong
# Reads the output of `jobs/tumor_train.py` (`$TUMOR`, default `data/demo/tumor_model`): the
# per-epoch history (loss, validation BER) from `metrics.json` or `train_history.json`, the ROC of
# the test split with the threshold chosen on validation, the confusion matrix, and a grid of
# misclassified test scans (pixels from the prepared shards named in `metrics.json`).
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

TUMOR = Path(os.environ.get("TUMOR", "data/demo/tumor_model"))
FIGURES = Path(os.environ.get("FIGURES", "data/demo/figures"))
FIGURES.mkdir(parents=True, exist_ok=True)


def read_json(path):
    return json.loads(path.read_text()) if path.exists() else None


metrics = read_json(TUMOR / "metrics.json")
if metrics is None:
    print(f"note: no metrics.json in {TUMOR}: run jobs/tumor_train.py; nothing to plot")

# %%
history = (metrics or {}).get("history")
if not history:
    saved = read_json(TUMOR / "train_history.json") or {}
    workers = saved.get("workers") or [{}]
    history = saved.get("history") or workers[0].get("history")
if history:
    hist = pd.DataFrame(history)
    print(hist.to_string(index=False))
    curves = [c for c in ("loss", "train_ber", "val_ber") if c in hist]
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.8), squeeze=False)
    for ax, c in zip(axes[0], curves):
        ax.plot(hist["epoch"], hist[c], marker="o")
        ax.set(title=c.replace("_", " "), xlabel="epoch")
    fig.tight_layout()
    fig.savefig(FIGURES / "tumor_training.png", dpi=90)
    print("wrote", FIGURES / "tumor_training.png")
elif metrics is not None:
    print("note: no per-epoch history in metrics.json or train_history.json")

# %%
preds_dir = TUMOR / "predictions"
preds = pd.read_parquet(preds_dir) if preds_dir.exists() else None
if preds is None and metrics is not None:
    print(f"note: no predictions table in {TUMOR}")
if preds is not None and metrics is not None:
    test = preds[preds["split"] == "test"]
    y, p = test["label"].to_numpy(), test["prob_tumor"].to_numpy()
    thresholds = np.r_[np.inf, np.sort(np.unique(p))[::-1]]
    tpr = np.array([(p[y == 1] >= t).mean() if (y == 1).any() else 0 for t in thresholds])
    fpr = np.array([(p[y == 0] >= t).mean() if (y == 0).any() else 0 for t in thresholds])
    thr = metrics["threshold"]
    at = ((p[y == 0] >= thr).mean(), (p[y == 1] >= thr).mean())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    axes[0].plot(fpr, tpr, label=f"test ROC (AUC {metrics.get('roc_auc', float('nan')):.3f})")
    axes[0].plot([0, 1], [0, 1], ls=":", c="grey")
    axes[0].scatter([at[0]], [at[1]], c="C3", zorder=3, label=f"threshold {thr:.3f} (from validation)")
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test split")
    axes[0].legend(loc="lower right")
    c = metrics["confusion"]
    cm = np.array([[c["actual_none"]["predicted_none"], c["actual_none"]["predicted_tumor"]],
                   [c["actual_tumor"]["predicted_none"], c["actual_tumor"]["predicted_tumor"]]])
    axes[1].imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        axes[1].text(j, i, str(v), ha="center", va="center", fontsize=14)
    axes[1].set_xticks([0, 1], ["none", "tumor"])
    axes[1].set_yticks([0, 1], ["none", "tumor"])
    axes[1].set(xlabel="predicted", ylabel="actual", title=f"Confusion matrix (BER {metrics['ber']:.3f})")
    fig.tight_layout()
    fig.savefig(FIGURES / "tumor_roc_confusion.png", dpi=90)
    print("wrote", FIGURES / "tumor_roc_confusion.png")

# %%
images_dir = Path(str((metrics or {}).get("data", ""))) / "images"
if preds is not None and metrics is not None:
    wrong = test[(test["prob_tumor"] >= metrics["threshold"]).astype(int) != test["label"]]
    print(f"{len(wrong)} of {len(test)} test scans misclassified")
    if not images_dir.exists():
        print(f"note: the prepared shards {images_dir} are gone: no scans to show")
    elif wrong.empty:
        print("note: no misclassified test scan")
    else:
        scans = pd.read_parquet(images_dir, columns=["hash", "pixels"])
        shown = wrong.merge(scans, on="hash", how="inner").head(16)
        cols = min(4, len(shown))
        rows = -(-len(shown) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, r in zip(axes.ravel(), shown.itertuples()):
            side = int(round(len(r.pixels) ** 0.5))
            ax.imshow(np.asarray(r.pixels, np.float32).reshape(side, side), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{'tumor' if r.label else 'none'}, p={r.prob_tumor:.2f}", fontsize=9)
        fig.suptitle("Misclassified test scans (truth, predicted probability of tumor)")
        fig.tight_layout()
        fig.savefig(FIGURES / "tumor_misclassified.png", dpi=90)
        print("wrote", FIGURES / "tumor_misclassified.png")

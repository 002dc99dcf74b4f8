"""Every notebook in notebooks/ runs top to bottom (jupytext → nbclient, a real kernel) on the
outputs of a small pipeline run, and writes its figures as non-empty PNG files."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_outputs import build_rating_outputs, build_tumor_outputs
from review_outputs import build_review_outputs

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NOTEBOOKS = {
    "01_dataset_overview.py": ["ratings_overview.png"],
    "02_similarity.py": ["similarity_top_titles.png", "similarity_distributions.png"],
    "03_factorization.py": ["factorization_rmse.png", "factorization_grid.png", "factorization_rounds.png",
                            "factorization_biases.png", "factorization_item_factors.png"],
    "04_recommendations.py": ["recommendations_metrics.png", "recommendations_popular.png",
                              "recommendations_fold_in.png"],
    "05_tumor.py": ["tumor_training.png", "tumor_roc_confusion.png", "tumor_misclassified.png"],
    "06_reviews.py": ["reviews_verified.png", "reviews_rating.png", "reviews_words.png"],
}


@pytest.fixture(scope="session")
def pipeline_env(spark, test_config, tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("pipeline")
    env = build_rating_outputs(spark, test_config, base)
    env["TUMOR"] = build_tumor_outputs(base)
    env.update(build_review_outputs(spark, test_config, base))
    return env


def test_every_notebook_is_listed():
    assert sorted(p.name for p in (ROOT / "notebooks").glob("*.py")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_and_saves_its_figures(name, pipeline_env, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    for key, value in {**pipeline_env, "FIGURES": str(figures)}.items():
        monkeypatch.setenv(key, value)
    nb = jupytext.read(ROOT / "notebooks" / name)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    for fig in NOTEBOOKS[name]:
        data = (figures / fig).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000, fig


def test_notebooks_note_missing_optional_outputs(pipeline_env, tmp_path, monkeypatch):
    """Without a similarity, recommendation, tumor or review output the notebooks print a note, not
    a traceback (the model and dataset are the only inputs every rating notebook needs)."""
    for key, value in {**pipeline_env, "FIGURES": str(tmp_path / "f"), "SIMILARITY": str(tmp_path / "none"),
                       "RECS": str(tmp_path / "none"), "TUMOR": str(tmp_path / "none"),
                       "REVIEWS_VERIFIED": str(tmp_path / "none"), "REVIEWS_RATING": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    for name in ("02_similarity.py", "04_recommendations.py", "05_tumor.py", "06_reviews.py"):
        nb = jupytext.read(ROOT / "notebooks" / name)
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT)}}).execute()
        printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
        assert "note:" in printed, name

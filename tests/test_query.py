"""The query command: answers from a hand-written model dir, and clear messages for bad input."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from batchml.factor_model import FactorModel
from batchml.model_dir import ModelMeta, load_model, read_items_pandas, read_meta, write_model
from batchml.query import main
from batchml.recommend.scoring import model_item_arrays, top_n_per_user
from batchml.schema import ITEM_COL, USER_COL
from handmade_outputs import write_handmade_outputs

@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """A model dir in the documented layout (written with pyarrow) and its dataset dir."""
    return write_handmade_outputs(tmp_path_factory.mktemp("query"))


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_recommend_known_user_excludes_rated_items(dirs, capsys):
    code, out, err = _run(capsys, "--model", dirs / "model", "--dataset", dirs / "ds",
                          "-n", 3, "recommend", "alice")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "excluding 2 rated items" in lines[0]
    assert "Return of the King" in lines[1]          # the remaining LOTR film comes first
    assert "Fellowship" not in out and "Two Towers" not in out
    assert all("WWE" not in ln for ln in lines[1:])


def test_unknown_user_and_missing_model(dirs, capsys):
    code, out, err = _run(capsys, "--model", dirs / "model", "recommend", "mallory")
    assert code == 1 and 'no such user id "mallory"' in err and "Traceback" not in err
    code, _, err = _run(capsys, "--model", dirs / "nope", "recommend", "alice")
    assert code == 1 and "does not exist" in err
    code, _, err = _run(capsys, "--dataset", dirs / "ds", "recommend", "alice")
    assert code == 1 and "needs --model" in err


def test_similar_title_case_insensitive_and_did_you_mean(dirs, capsys):
    code, out, err = _run(capsys, "--dataset", dirs / "ds", "--similar", dirs / "sim",
                          "similar", "the lord of the rings:  the TWO towers")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "Two Towers" in lines[0] and "Return of the King" in lines[1] and "Fellowship" in lines[2]
    code, out, err = _run(capsys, "--dataset", dirs / "ds", "--similar", dirs / "sim",
                          "similar", "Lord of the Rings: The Two Tower")
    assert code == 1 and "no such title" in err and "did you mean" in err and "Two Towers" in err
    code, out, err = _run(capsys, "--dataset", dirs / "ds", "similar", "Zzzyzx Qqq")
    assert code == 1 and 'no such title "Zzzyzx Qqq"' in err and "did you mean" not in err


def test_similar_without_similarity_output_says_so(dirs, capsys):
    code, _, err = _run(capsys, "--dataset", dirs / "ds", "--similar", dirs / "missing",
                        "similar", "Obscure Movie")
    assert code == 1 and "no similar_items table" in err and "jobs/similarity.py" in err
    code, _, err = _run(capsys, "--dataset", dirs / "ds", "similar", "Obscure Movie")
    assert code == 1 and "--similar DIR" in err


def test_popular_shrunk_mean_and_bias(dirs, capsys):
    code, out, err = _run(capsys, "--dataset", dirs / "ds", "--set", "recommend.prior_strength=5",
                          "popular")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "Plain Movie" in lines[1] and "Obscure Movie" in lines[2]
    code, out, err = _run(capsys, "--dataset", dirs / "ds", "--set", "recommend.prior_strength=0",
                          "popular")
    assert "Obscure Movie" in out.strip().splitlines()[1]   # raw mean: the failure mode
    code, out, err = _run(capsys, "--model", dirs / "model", "-n", 2, "popular", "--by", "bias")
    assert code == 0 and "Fellowship" in out.splitlines()[1]
    code, _, err = _run(capsys, "--model", dirs / "model", "popular")
    assert code == 1 and "needs --dataset" in err


def test_foldin_file(dirs, capsys, tmp_path):
    f = tmp_path / "me.csv"
    f.write_text('item,rating\n100,5\n"battlestar galactica: season 1",5\nWWE: WrestleMania XX,1\n')
    code, out, err = _run(capsys, "--model", dirs / "model", "--dataset", dirs / "ds", "-n", 4,
                          "foldin", f)
    assert code == 0, err
    top = out.strip().splitlines()[1:]
    assert {"Two Towers", "Return of the King", "Season 2"} == {
        t for t in ("Two Towers", "Return of the King", "Season 2") if any(t in ln for ln in top[:3])}
    assert "WWE" not in "".join(top)
    bad = tmp_path / "bad.csv"
    bad.write_text("item,rating\nBattlestar Galactica Season 3,5\n")
    code, _, err = _run(capsys, "--model", dirs / "model", "--dataset", dirs / "ds", "foldin", bad)
    assert code == 1 and "line 2" in err and "did you mean" in err and "Traceback" not in err


def test_usage_errors_exit_2(dirs, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    code, _, err = _run(capsys, "--set", "recommend.top_nn=3", "--dataset", dirs / "ds", "popular")
    assert code == 2 and "recommend.top_nn" in err


def test_runs_as_a_module(dirs):
    proc = subprocess.run([sys.executable, "-m", "batchml.query", "--dataset", str(dirs / "ds"),
                           "--similar", str(dirs / "sim"), "similar", "obscure movi"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "did you mean" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_model_dir_is_one_error_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "batchml.query", "--model", str(tmp_path / "nope"),
                           "recommend", "alice"], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("error: ") and "does not exist" in lines[0]


def test_top_n_goes_through_the_setting(dirs, capsys):
    code, _, err = _run(capsys, "--dataset", dirs / "ds", "-n", 0, "popular")
    assert code == 2 and "recommend.top_n" in err and "Traceback" not in err
    code, out, err = _run(capsys, "--dataset", dirs / "ds", "--set", "recommend.top_n=2", "popular")
    assert code == 0 and out.startswith("top 2 ")


# ------------------------------------------------------------------------ one γ for every reader
GAMMA_BIAS = np.array([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])          # bias order: item 0 first
GAMMA_Q = np.array([[-1.0, 0.0], [-0.5, 0.0], [0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [1.5, 0.0]])
GAMMA_P, GAMMA_BU, GAMMA_MU = np.array([1.0, 0.0]), 0.1, 3.0


def _gamma_model_dir(spark, path, gamma):
    """A model dir written by model_dir.write_model whose γ is ``gamma`` (one user "u0")."""
    side = "bias double, features array<float>"
    items = spark.createDataFrame(
        [(k, float(b), [float(x) for x in q]) for k, (b, q) in enumerate(zip(GAMMA_BIAS, GAMMA_Q))],
        f"{ITEM_COL} int, {side}")
    users = spark.createDataFrame([(0, GAMMA_BU, [float(x) for x in GAMMA_P])], f"{USER_COL} int, {side}")
    model = FactorModel(mu=GAMMA_MU, user_df=users, item_df=items, gamma=gamma, rank=2, kind="aligned")
    path.mkdir()
    write_model(str(path), model, ModelMeta.of(model, split_test=None, split_seed=None),
                users_df=spark.createDataFrame([(0, "u0")], f"{USER_COL} int, user_id string"),
                items_df=spark.createDataFrame([(k, f"i{k}", f"Film {k}", 2001) for k in range(6)],
                                               f"{ITEM_COL} int, item_id string, title string, year int"))
    return path


@pytest.mark.parametrize("gamma", [0.0, 2.5])
def test_query_recommend_and_factorize_read_the_models_gamma(spark, tmp_path, capsys, gamma):
    model_dir = _gamma_model_dir(spark, tmp_path / "model", gamma)
    meta = read_meta(str(model_dir))
    assert meta.gamma == gamma
    scores = GAMMA_MU + GAMMA_BU + GAMMA_BIAS + gamma * (GAMMA_Q @ GAMMA_P)
    want = [f"i{k}" for k in np.lexsort((np.arange(6), -scores))]
    if gamma == 0.0:
        assert want == [f"i{k}" for k in range(6)]          # the bias-only ranking
    # factorize's scorer (model_dir.load_model -> FactorModel -> with_prediction)
    md = load_model(spark, str(model_dir))
    assert md.model.gamma == gamma
    pairs = spark.createDataFrame([("u0", "i3")], "user_id string, item_id string")
    assert md.predict(pairs).first()["prediction"] == pytest.approx(scores[3])
    # the recommend job's candidate arrays and blocked scorer
    arrays = model_item_arrays(read_items_pandas(str(model_dir)), mu=meta.mu, gamma=meta.gamma,
                               rank=meta.rank)
    np.testing.assert_allclose(arrays.factors, gamma * GAMMA_Q)
    recs = top_n_per_user(md.users_df, arrays, n=6, partitions=1).orderBy("rank").collect()
    assert [f"i{r[ITEM_COL]}" for r in recs] == want
    np.testing.assert_allclose([r["score"] for r in recs], sorted(scores, reverse=True), atol=1e-6)
    # the query command
    code, out, err = _run(capsys, "--model", model_dir, "-n", 6, "recommend", "u0")
    assert code == 0, err
    lines = out.strip().splitlines()[1:]
    assert [ln.rsplit("[", 1)[1].rstrip("]") for ln in lines] == want
    assert [float(ln.split()[1]) for ln in lines] == pytest.approx(sorted(scores, reverse=True), abs=1e-3)

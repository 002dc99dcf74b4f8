"""The Flask app: bookmarkable routes over a :class:`batchml.catalog.Catalog`.

``/`` search box and the popular list, ``/search?q=`` titles (case-insensitive, "did you mean"),
``/item/<item_id>`` a title and its similar titles (similarity, co-count), ``/user/<user_id>`` a
user's top-N, ``/foldin`` a form: rate a few titles, get recommendations at once.  Every value is
escaped by Jinja; a user's mistake (unknown title or id, empty form, a rating out of range) shows a
message with status 400/404, anything else a plain 500 page: never a stack trace.
"""
from __future__ import annotations

import logging

import pandas as pd
from flask import Flask, current_app, redirect, render_template, request, url_for
from jinja2 import DictLoader
from werkzeug.exceptions import HTTPException

from batchml.catalog import Catalog, describe_items
from batchml.errors import InputError
from batchml.recommend.foldin import match_ratings
from batchml.schema import (CO_COUNT_COL, COUNT_COL, ITEM_ID_COL, MEAN_COL, SCORE_COL, SHRUNK_COL,
                            SIMILARITY_COL, YEAR_COL)
from batchml.web.pages import TEMPLATES

LOG = logging.getLogger(__name__)
CATALOG = "BATCHML_CATALOG"
FOLDIN_ROWS = 5
DECIMALS = {SIMILARITY_COL: 3, SCORE_COL: 3, SHRUNK_COL: 3, MEAN_COL: 2}


class NotFound(InputError):
    """An unknown item or user id in a URL (status 404)."""


def _cat() -> Catalog:
    return current_app.config[CATALOG]


def _year(v) -> int | None:
    return None if v is None or pd.isna(v) else int(v)


def _rows(pdf: pd.DataFrame) -> list[dict]:
    """Rows of an item list for the templates: titles, years and rounded numbers."""
    rows = describe_items(_cat().lookup, pdf).to_dict("records")
    for r in rows:
        r[YEAR_COL] = _year(r.get(YEAR_COL))
        for c, d in DECIMALS.items():
            if c in r and r[c] is not None:
                r[c] = f"{float(r[c]):.{d}f}"
        if COUNT_COL in r:
            r[COUNT_COL] = f"{int(r[COUNT_COL]):,}"
        if CO_COUNT_COL in r:
            r[CO_COUNT_COL] = f"{int(r[CO_COUNT_COL]):,}"
    return rows


# ------------------------------------------------------------------------------------- routes
def home():
    cat = _cat()
    try:
        top, mu = cat.popular()
        note = (f"by shrunk mean: {cat.s.prior_strength:g} pseudo-ratings at the mean {mu:.2f} are "
                "added to every title" if mu is not None else "the recommendation job's popular list")
        return render_template("home.html", popular=_rows(top), popular_note=note, messages=[])
    except InputError as exc:
        return render_template("home.html", popular=None, popular_note=f"no popular list: {exc}",
                               messages=[])


def search():
    q = request.args.get("q", "").strip()
    if not q:
        return render_template("search.html", query=q, rows=[], suggestions=[],
                               messages=["type a title (or an item id) to search"]), 400
    lookup = _cat().lookup
    hits = lookup.by_id_or_title(q)
    suggestions = [t for t in lookup.suggestions(q, n=10) if not hits or lookup.by_title(t) != hits]
    if len(hits) == 1 and request.args.get("go") != "list":
        return redirect(url_for("item", item_id=str(lookup.describe(hits).iloc[0][ITEM_ID_COL])))
    rows = lookup.describe(hits).assign(**{YEAR_COL: lambda d: d[YEAR_COL].map(_year)}) \
        .to_dict("records") if hits else []
    messages = [] if hits or suggestions else [lookup.not_found_message(q)]
    return render_template("search.html", query=q, rows=rows, suggestions=suggestions,
                           messages=messages), 200 if hits or suggestions else 404


def item(item_id: str):
    cat = _cat()
    hits = cat.lookup.by_id(item_id)
    if not hits:
        raise NotFound(f'no item with id "{item_id}"')
    info = cat.lookup.describe(hits).to_dict("records")[0]
    info[YEAR_COL] = _year(info.get(YEAR_COL))
    try:
        similar, note = _rows(cat.similar(hits[0])), None
    except InputError as exc:
        similar, note = None, str(exc)
    return render_template("item.html", item=info, similar=similar, similar_note=note, messages=[])


def user_lookup():
    uid = request.args.get("id", "").strip()
    if not uid:
        raise InputError("type a user id")
    return redirect(url_for("user", user_id=uid))


def user(user_id: str):
    cat = _cat()
    if not cat.model_user(user_id).shape[0]:
        raise NotFound(f'no such user id "{user_id}"')
    got = cat.recommend_user(user_id)
    note = (f"{len(got.seen)} titles they rated are left out" if got.seen is not None
            else "no dataset given: titles they rated are not left out")
    if not got.has_factors:
        note += "; the model has no factors for this user: ranked by biases only"
    return render_template("user.html", user_id=user_id, rows=_rows(got.top), note=note, messages=[])


def _form_entries() -> list[tuple[str, str]]:
    titles, ratings = request.form.getlist("title"), request.form.getlist("rating")
    n = max(len(titles), len(ratings))
    pairs = [((titles[k] if k < len(titles) else "").strip(),
              (ratings[k] if k < len(ratings) else "").strip()) for k in range(n)]
    return pairs + [("", "")] * max(0, FOLDIN_ROWS - n)


def _fold_in_form(entries: list[tuple[str, str]]) -> tuple[dict, list[str]]:
    """The fold-in result for the form's entries, or messages saying what to fix."""
    cat = _cat()
    used = [(f"row {k}", t, r) for k, (t, r) in enumerate(entries, 1) if t or r]
    problems = [f"{w}: give a title" for w, t, _ in used if not t]
    problems += [f"{w}: give a rating for {t}" for w, t, r in used if t and not r]
    if not used:
        return {}, ["rate at least one title"]
    lo, hi = cat.meta.rating_min, cat.meta.rating_max
    idx, ratings, bad = match_ratings([u for u in used if u[1] and u[2]], cat.lookup,
                                      rating_range=(lo, hi))
    problems += bad
    if problems:
        return {}, problems
    fi = cat.fold_in(idx, ratings)
    rated = cat.lookup.describe(idx).assign(rating=ratings).to_dict("records")
    return {"rated": rated, "rows": _rows(fi.top)}, []


def foldin():
    cat = _cat()
    lo, hi = f"{cat.meta.rating_min:g}", f"{cat.meta.rating_max:g}"
    if request.method == "GET":
        return render_template("foldin.html", entries=[("", "")] * FOLDIN_ROWS, lo=lo, hi=hi,
                               messages=[])
    entries = _form_entries()
    result, messages = _fold_in_form(entries)
    status = 400 if messages else 200
    return render_template("foldin.html", entries=entries, lo=lo, hi=hi, messages=messages,
                           rated=result.get("rated"), rows=result.get("rows", [])), status


# ------------------------------------------------------------------------------------- errors
def _user_error(exc: InputError):
    return render_template("error.html", heading="Not found" if isinstance(exc, NotFound) else
                           "Cannot do that", messages=[str(exc)]), 404 if isinstance(exc, NotFound) else 400


def _http_error(exc: HTTPException):
    return render_template("error.html", heading=f"{exc.code} {exc.name}",
                           messages=[exc.description]), exc.code


def _server_error(exc: Exception):
    LOG.exception("request failed: %s", request.path)
    return render_template("error.html", heading="Something went wrong",
                           messages=["the server could not answer this request; see its log"]), 500


ROUTES = (("/", home, ("GET",)), ("/search", search, ("GET",)), ("/item/<item_id>", item, ("GET",)),
          ("/user", user_lookup, ("GET",)), ("/user/<user_id>", user, ("GET",)),
          ("/foldin", foldin, ("GET", "POST")))


def create_app(cat: Catalog) -> Flask:
    """The app serving ``cat`` (read once per process; requests only read)."""
    app = Flask(__name__)
    app.jinja_loader = DictLoader(TEMPLATES)
    app.config[CATALOG] = cat
    for rule, view, methods in ROUTES:
        app.add_url_rule(rule, view.__name__, view, methods=list(methods))
    app.register_error_handler(InputError, _user_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _server_error)
    return app


def warm_up(cat: Catalog) -> None:
    """Read what every page needs once, so a missing input fails at start, not on a request."""
    _ = cat.lookup
    if cat.model_dir:
        _ = cat.meta, cat.candidates, cat.trained
    try:
        cat.popular()
    except InputError as exc:
        LOG.warning("no popular list: %s", exc)

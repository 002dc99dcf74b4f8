"""The figures users ask of a dataset first, and the line accounting that must reconcile."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml import schema as S
from batchml.io.parsed import KIND_BLANK, KIND_DATA, KIND_HEADER


def line_counts(parsed: DataFrame, role: str, extra_rejects: DataFrame | None = None) -> dict:
    """Per source file: lines read, headers, accepted, blank, rejected (and by reason).

    ``parsed`` has ``source, kind, reason``.  ``extra_rejects`` (``source, reason``) are data lines
    rejected after parsing (e.g. probe pairs naming an unknown user): they move from accepted to
    rejected.  ``role`` (ratings, items, probe, qualifying) is recorded with each file.
    """
    rows = parsed.groupBy("source", "kind", "reason").count().collect()
    extra = extra_rejects.groupBy("source", "reason").count().collect() if extra_rejects is not None else []
    return counts_by_kind([(r["source"], r["kind"], r["reason"], int(r["count"])) for r in rows], role,
                          [(r["source"], r["reason"], int(r["count"])) for r in extra])


def counts_by_kind(rows, role: str, extra_rejects=()) -> dict:
    """:func:`line_counts` from collected ``(source, kind, reason, n)`` rows and ``(source, reason,
    n)`` rows of later rejects (a pure function on the driver)."""
    out: dict[str, dict] = {}
    for source, kind, reason, n in rows:
        c = out.setdefault(source, {"role": role, "lines": 0, "headers": 0, "accepted": 0, "blank": 0,
                                    "rejected": 0, "rejected_by_reason": {}})
        c["lines"] += n
        if kind == KIND_HEADER:
            c["headers"] += n
        elif kind == KIND_DATA:
            c["accepted"] += n
        elif kind == KIND_BLANK:
            c["blank"] += n
        else:
            c["rejected"] += n
            c["rejected_by_reason"][reason] = c["rejected_by_reason"].get(reason, 0) + n
    for source, reason, n in extra_rejects:
        c = out[source]
        c["accepted"] -= n
        c["rejected"] += n
        c["rejected_by_reason"][reason] = c["rejected_by_reason"].get(reason, 0) + n
    for c in out.values():
        c["reconciles"] = c["lines"] == c["headers"] + c["accepted"] + c["blank"] + c["rejected"]
    return out


def dataset_stats(ratings: DataFrame, n_users: int, n_items: int) -> dict:
    """Counts, mean, histogram, date range and per-user / per-item activity of a ratings table
    (``n_users``, ``n_items``: the rows of the users and items tables).

    Three aggregations: per rating value (count, first and last date: the histogram, the count, the
    mean and the date range follow on the driver) and one per activity column."""
    by_value = sorted(ratings.groupBy(S.RATING_COL).agg(
        F.count(F.lit(1)).alias("n"), F.min(S.TS_COL).alias("first"), F.max(S.TS_COL).alias("last"),
    ).collect(), key=lambda r: (r[S.RATING_COL] is None, r[S.RATING_COL]))
    n = sum(int(r["n"]) for r in by_value)
    rated = [(r[S.RATING_COL], int(r["n"])) for r in by_value if r[S.RATING_COL] is not None]
    n_rated = sum(c for _, c in rated)
    firsts = [r["first"] for r in by_value if r["first"] is not None]
    lasts = [r["last"] for r in by_value if r["last"] is not None]
    per_user, per_item = activity(ratings, S.USER_COL), activity(ratings, S.ITEM_COL)
    out = {
        "ratings": n,
        "users": n_users, "items": n_items,
        "users_with_ratings": per_user.pop("distinct"), "items_with_ratings": per_item.pop("distinct"),
        "mean_rating": sum(v * c for v, c in rated) / n_rated if n_rated else None,
        "rating_histogram": {str(r[S.RATING_COL]): int(r["n"]) for r in by_value},
        "date_range": [str(min(firsts)), str(max(lasts))] if firsts else None,
        "ratings_per_user": per_user,
        "ratings_per_item": per_item,
    }
    out.update(review_stats(ratings))
    return out


def activity(ratings: DataFrame, col: str) -> dict:
    """Ratings per distinct ``col`` value: min, median, p99, max, and ``distinct`` (how many values)."""
    per = ratings.groupBy(col).count()
    r = per.agg(F.min("count").alias("min"), F.percentile_approx("count", [0.5, 0.99], 10000).alias("q"),
                F.max("count").alias("max"), F.count(F.lit(1)).alias("distinct")).first()
    if r["min"] is None:
        return {"min": 0, "median": 0, "p99": 0, "max": 0, "distinct": 0}
    return {"min": int(r["min"]), "median": int(r["q"][0]), "p99": int(r["q"][1]), "max": int(r["max"]),
            "distinct": int(r["distinct"])}


def review_stats(ratings: DataFrame) -> dict:
    """Amazon extras when the ratings have them: the fraction of verified purchases (among ratings
    with a known flag) and helpful votes (total, share of ratings with at least one, max)."""
    out: dict = {}
    aggs = []
    if S.VERIFIED_COL in ratings.columns:
        aggs += [F.avg(F.col(S.VERIFIED_COL).cast("double")).alias("verified"),
                 F.count(S.VERIFIED_COL).alias("verified_known")]
    if S.HELPFUL_COL in ratings.columns:
        aggs += [F.sum(S.HELPFUL_COL).alias("votes"), F.max(S.HELPFUL_COL).alias("votes_max"),
                 F.avg((F.col(S.HELPFUL_COL) > 0).cast("double")).alias("voted")]
    if not aggs:
        return out
    r = ratings.agg(*aggs).first().asDict()
    if "verified" in r:
        out["verified_fraction"] = r["verified"]
        out["verified_known"] = int(r["verified_known"])
    if "votes" in r:
        out["helpful_votes"] = {"total": int(r["votes"] or 0), "max": r["votes_max"],
                                "fraction_with_votes": r["voted"]}
    return out


def category_stats(reviews: DataFrame) -> dict:
    """Figures of the reviews table: its row count and mean body length, and, when the reviews
    span several categories, per category: reviews, users, items, mean rating, verified fraction
    (among reviews with a known flag)."""
    total = reviews.agg(F.count(F.lit(1)).alias("n"), F.avg(S.BODY_LENGTH_COL).alias("len")).first()
    out: dict = {"reviews": int(total["n"]), "mean_body_length": total["len"]}
    figures = ("reviews", "users", "items", "mean_rating", "verified_fraction")
    rows = (reviews.groupBy(S.CATEGORY_COL)
            .agg(F.count(F.lit(1)).alias("reviews"), F.countDistinct(S.USER_COL).alias("users"),
                 F.countDistinct(S.ITEM_COL).alias("items"), F.avg(S.RATING_COL).alias("mean_rating"),
                 F.avg(F.col(S.VERIFIED_COL).cast("double")).alias("verified_fraction"))
            .orderBy(S.CATEGORY_COL).collect())
    if len(rows) > 1:
        out["by_category"] = {str(r[S.CATEGORY_COL]): {k: r[k] for k in figures} for r in rows}
    return out


def rejects_by_reason(counts: dict) -> dict:
    """Rejected lines by reason over all input files (from :func:`line_counts` results)."""
    out: dict[str, int] = {}
    for c in counts.values():
        for reason, n in c["rejected_by_reason"].items():
            out[reason] = out.get(reason, 0) + n
    return dict(sorted(out.items(), key=lambda x: (-x[1], x[0])))


def reconcile(counts: dict, *, duplicates: int, removed: int, ratings_written: int,
              reviews_written: int | None = None) -> dict:
    """Line accounting of every file, ratings written = accepted - duplicates - removed, and (with
    review text) reviews written = ratings written."""
    accepted = sum(c["accepted"] for c in counts.values() if c["role"] == S.RATINGS)
    reviews = {} if reviews_written is None else {"reviews_written": reviews_written,
                                                  "reviews_reconcile": reviews_written == ratings_written}
    return {
        "all_files_reconcile": all(c["reconciles"] for c in counts.values()),
        "lines_read": sum(c["lines"] for c in counts.values()),
        "lines_rejected": sum(c["rejected"] for c in counts.values()),
        "rejected_by_reason": rejects_by_reason(counts),
        "rating_lines_accepted": accepted,
        "duplicates_dropped": duplicates,
        "probe_pairs_removed": removed,
        "ratings_written": ratings_written,
        "ratings_reconcile": ratings_written == accepted - duplicates - removed,
        **reviews,
    }

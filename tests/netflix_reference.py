"""An independent plain-Python reading of Netflix-format files: the oracle for the Spark parser."""
from __future__ import annotations

import datetime as dt
import gzip
import re
from pathlib import Path

from batchml.io import reasons as R

_ID = re.compile(r"[0-9]{1,9}")


def _valid_id(tok: str) -> int | None:
    tok = tok.strip()
    return int(tok) if _ID.fullmatch(tok) and int(tok) > 0 else None


def _date(tok: str) -> dt.date | None:
    tok = tok.strip()
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", tok):
        return None
    try:
        return dt.datetime.strptime(tok, "%Y-%m-%d").date()
    except ValueError:
        return None


def read_text(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    text = data.decode("ascii")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def parse_file(path: Path, fields=("user", "rating", "date")):
    """Returns (data, rejects, kinds): data rows (line, movie, user, rating, date), rejects
    (line, reason), and counts of header/blank/data/reject lines."""
    data, rejects = [], []
    kinds = {"header": 0, "blank": 0, "data": 0, "reject": 0}
    movie, state = None, "none"
    for n, raw in enumerate(read_text(path), start=1):
        s = raw.strip()
        if s == "":
            kinds["blank"] += 1
            continue
        m = re.fullmatch(r"([^,:]*):", s)
        if m:
            mid = _valid_id(m.group(1))
            if mid is None:
                state = "bad"
                rejects.append((n, R.BAD_HEADER))
                kinds["reject"] += 1
            else:
                movie, state = mid, "ok"
                kinds["header"] += 1
            continue
        reason = None
        parts = s.split(",")
        if state == "none":
            reason = R.BEFORE_HEADER
        elif state == "bad":
            reason = R.UNDER_BAD_HEADER
        elif len(parts) != len(fields):
            reason = R.WRONG_FIELD_COUNT
        else:
            vals = dict(zip(fields, parts))
            user = _valid_id(vals["user"])
            rating = vals.get("rating", "").strip()
            if user is None:
                reason = R.BAD_USER_ID
            elif "rating" in vals and not re.fullmatch(r"[0-9]{1,3}", rating):
                reason = R.BAD_RATING
            elif "rating" in vals and not 1 <= int(rating) <= 5:
                reason = R.RATING_OUT_OF_RANGE
            elif "date" in vals and _date(vals["date"]) is None:
                reason = R.BAD_DATE
        if reason:
            rejects.append((n, reason))
            kinds["reject"] += 1
        else:
            vals = dict(zip(fields, parts))
            data.append((n, movie, int(vals["user"]),
                         int(vals["rating"]) if "rating" in vals else None,
                         _date(vals["date"]) if "date" in vals else None))
            kinds["data"] += 1
    return data, rejects, kinds


def parse_titles(path: Path):
    """movie_titles.csv decoded as ISO-8859-1, split on the first two commas."""
    out = {}
    for line in path.read_bytes().decode("iso-8859-1").split("\n"):
        if not line:
            continue
        mid, year, title = line.split(",", 2)
        out[int(mid)] = (None if year == "NULL" else int(year), title)
    return out

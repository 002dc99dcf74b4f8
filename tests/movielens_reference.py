"""An independent plain-Python reading of MovieLens and Kaggle-Netflix-CSV files (numeric-id
ratings lines, title files): the oracle for the Spark readers."""
from __future__ import annotations

import gzip
import math
import re
from pathlib import Path

from batchml.io import reasons as R

#: variant -> (ratings sep, header, half stars, titles regex, titles header, titles encoding, unquote)
VARIANTS = {
    "100k": ("\t", None, False, r"\s*([0-9]+)\|([^|]*)(?:\|[^|]*){22}", None, "iso-8859-1", False),
    "dat": ("::", None, False, r"\s*([0-9]+)::(.*)::([^:]*)", None, "iso-8859-1", False),
    "csv": (",", "userId,movieId,rating,timestamp", True, r'\s*([0-9]+),("(?:[^"]|"")*"|[^",]*),([^",]*)',
            "movieId,title,genres", "utf-8", True),
}


def read_lines(path: Path, encoding: str = "utf-8") -> list[str]:
    """Lines split on LF (a final LF ends the last line), a trailing CR removed."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    lines = data.decode(encoding).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def positive_id(tok: str | None) -> str | None:
    if tok is None or not re.fullmatch(r"[0-9]{1,12}", tok) or int(tok) <= 0:
        return None
    return str(int(tok))


def parse_ratings(path: Path, sep: str, fields, header: str | None, half: bool = False):
    """Returns (data, rejects, kinds): data (line, user, item, rating, ts seconds or None), rejects
    (line, reason), kinds counts."""
    data, rejects = [], []
    kinds = {"header": 0, "blank": 0, "data": 0, "reject": 0}
    for n, v in enumerate(read_lines(path), start=1):
        if v.strip(" ") == "":
            kinds["blank"] += 1
            continue
        if header is not None and v.strip(" ") == header:
            kinds["header"] += 1
            continue
        parts = v.split(sep)
        tok = {f: parts[i].strip(" ") if i < len(parts) else None for i, f in enumerate(fields)}
        user, item = positive_id(tok["user"]), positive_id(tok["item"])
        rt = tok["rating"]
        if half:
            rating = float(rt) if rt is not None and re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,6})?", rt) else None
            off = rating is not None and rating * 2 != math.floor(rating * 2)
            low, high = 0.5, 5.0
        else:
            rating = int(rt) if rt is not None and re.fullmatch(r"[0-9]{1,3}", rt) else None
            off, low, high = False, 1, 5
        ts = None
        if "ts" in tok and tok["ts"] is not None and re.fullmatch(r"[0-9]{1,12}", tok["ts"]):
            ts = int(tok["ts"])
        reason = None
        if len(parts) != len(fields):
            reason = R.WRONG_FIELD_COUNT
        elif user is None:
            reason = R.BAD_USER_ID
        elif item is None:
            reason = R.BAD_ITEM_ID
        elif rating is None or off:
            reason = R.BAD_RATING
        elif not low <= rating <= high:
            reason = R.RATING_OUT_OF_RANGE
        elif "ts" in tok and ts is None:
            reason = R.BAD_DATE
        if reason:
            rejects.append((n, reason))
            kinds["reject"] += 1
        else:
            data.append((n, user, item, float(rating), ts))
            kinds["data"] += 1
    return data, rejects, kinds


def unquote(s: str) -> str:
    if re.fullmatch(r'"(?:[^"]|"")*"', s):
        return s[1:-1].replace('""', '"')
    return s


def year_from_title(title: str) -> int | None:
    m = re.search(r"\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$", title)
    return int(m.group(1)) if m else None


def parse_titles(path: Path, line_rx: str, header: str | None, encoding: str, do_unquote: bool,
                 year_group: int | None = None, title_group: int = 2):
    """Returns (titles {item_id: (title, year)}, rejected line numbers, kinds)."""
    out, rejects = {}, []
    kinds = {"header": 0, "blank": 0, "data": 0, "reject": 0}
    for n, v in enumerate(read_lines(path, encoding), start=1):
        if v.strip(" ") == "":
            kinds["blank"] += 1
            continue
        if header is not None and v.strip(" ") == header:
            kinds["header"] += 1
            continue
        m = re.fullmatch(line_rx, v)
        item = positive_id(m.group(1)) if m else None
        if item is None:
            rejects.append(n)
            kinds["reject"] += 1
            continue
        title = m.group(title_group)
        if do_unquote:
            title = unquote(title)
        if year_group is not None:
            y = m.group(year_group)
            year = int(y) if re.fullmatch(r"[0-9]{4}", y) else None
        else:
            year = year_from_title(title)
        out[item] = (title, year)
        kinds["data"] += 1
    return out, rejects, kinds


def latest(rows):
    """Keep the latest of duplicate (user, item) rows by (ts, source, line); ts None is oldest.
    ``rows``: (source, line, user, item, rating, ts, *extra). Returns {(user, item): row}."""
    best = {}
    for row in rows:
        source, line, user, item, _, ts = row[:6]
        key = (-1 if ts is None else ts, source, line)
        cur = best.get((user, item))
        if cur is None or key > cur[0]:
            best[(user, item)] = (key, row)
    return {k: v[1] for k, v in best.items()}

"""An independent plain-Python reading of Amazon review TSV and JSON-lines files: the oracle for
the Spark readers."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from batchml.io import reasons as R
from movielens_reference import read_lines

_KINDS = lambda: {"header": 0, "blank": 0, "data": 0, "reject": 0}  # noqa: E731


def _date(tok: str) -> dt.date | None:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", tok):
        return None
    try:
        return dt.datetime.strptime(tok, "%Y-%m-%d").date()
    except ValueError:
        return None


def parse_tsv(path: Path):
    """Returns (data, rejects, kinds): data (line, user, item, rating, date, verified, helpful, title)."""
    data, rejects, kinds = [], [], _KINDS()
    for n, v in enumerate(read_lines(path), start=1):
        if v.strip(" ") == "":
            kinds["blank"] += 1
            continue
        if v.startswith("marketplace\tcustomer_id\t"):
            kinds["header"] += 1
            continue
        f = v.split("\t")
        reason = None
        if len(f) != 15:
            reason = R.WRONG_FIELD_COUNT
        else:
            user, item, rt = f[1].strip(" "), f[3].strip(" "), f[7].strip(" ")
            helpful, total, verified = f[8].strip(" "), f[9].strip(" "), f[11].strip(" ")
            date = _date(f[14].strip(" "))
            if not re.fullmatch(r"[0-9]{1,20}", user):
                reason = R.BAD_USER_ID
            elif not re.fullmatch(r"[0-9A-Za-z]{1,32}", item):
                reason = R.BAD_ITEM_ID
            elif not re.fullmatch(r"[0-9]{1,3}", rt):
                reason = R.BAD_RATING
            elif not 1 <= int(rt) <= 5:
                reason = R.RATING_OUT_OF_RANGE
            elif not (re.fullmatch(r"[0-9]{1,9}", helpful) and re.fullmatch(r"[0-9]{1,9}", total)):
                reason = R.BAD_VOTES
            elif verified not in ("Y", "N"):
                reason = R.BAD_VERIFIED
            elif date is None:
                reason = R.BAD_DATE
        if reason:
            rejects.append((n, reason))
            kinds["reject"] += 1
        else:
            data.append((n, user, item, float(rt), date, verified == "Y", int(helpful), f[5]))
            kinds["data"] += 1
    return data, rejects, kinds


KEYS = {"2023": ("user_id", "parent_asin", "rating", "timestamp"),
        "2018": ("reviewerID", "asin", "overall", "unixReviewTime"),
        "2014": ("reviewerID", "asin", "overall", "unixReviewTime")}


def _missing(val) -> bool:
    return val is None or (isinstance(val, str) and val.strip(" ") == "")


def _number(val) -> float | None:
    if isinstance(val, bool):
        return None
    if isinstance(val, (int, float)):
        return float(val)
    if isinstance(val, str) and re.fullmatch(r"[+-]?[0-9]+(\.[0-9]+)?", val.strip()):
        return float(val)
    return None


def parse_json(path: Path, schema: str):
    """Returns (data, rejects, kinds): data (line, user, item, rating, ts_millis, verified, helpful)."""
    data, rejects, kinds = [], [], _KINDS()
    uk, ik, rk, tk = KEYS[schema]
    for n, v in enumerate(read_lines(path), start=1):
        if v.strip(" ") == "":
            kinds["blank"] += 1
            continue
        try:
            obj = json.loads(v)
        except ValueError:
            obj = None
        reason = None
        if not isinstance(obj, dict):
            reason = R.NOT_JSON
        else:
            user, item, rating, t = obj.get(uk), obj.get(ik), obj.get(rk), obj.get(tk)
            tok = str(t).strip(" ") if isinstance(t, (int, str)) and not isinstance(t, bool) else "x"
            r = _number(rating)
            if any(_missing(x) for x in (user, item, rating, t)):
                reason = R.MISSING_FIELD
            elif r is None:
                reason = R.BAD_RATING
            elif not 1 <= r <= 5:
                reason = R.RATING_OUT_OF_RANGE
            elif not re.fullmatch(r"[0-9]{1,16}", tok):
                reason = R.BAD_DATE
        if reason:
            rejects.append((n, reason))
            kinds["reject"] += 1
            continue
        ms = int(tok) if schema == "2023" else int(tok) * 1000
        if schema == "2023":
            verified, helpful = obj.get("verified_purchase"), obj.get("helpful_vote")
        elif schema == "2018":
            verified = obj.get("verified")
            helpful = int(obj["vote"].replace(",", "")) if "vote" in obj else 0
        else:
            verified, helpful = None, obj["helpful"][0] if "helpful" in obj else None
        data.append((n, str(user), str(item), r, ms, verified, helpful))
        kinds["data"] += 1
    return data, rejects, kinds


# ------------------------------------------------------------------------------------- review text
_NAMED = (("&quot;", '"'), ("&apos;", "'"), ("&lt;", "<"), ("&gt;", ">"), ("&nbsp;", "\u00a0"), ("&amp;", "&"))


def _code_point(m: re.Match) -> str:
    cp = int(m.group(1)) if m.group(1) else int(m.group(2), 16)
    return chr(cp) if 1 <= cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF else m.group(0)


def decode(text: str | None) -> str | None:
    """Review text as the reviews table holds it: ``<br />`` a newline, numeric entities of valid
    code points, then ``&quot; &apos; &lt; &gt; &nbsp;`` and last ``&amp;`` decoded."""
    if text is None:
        return None
    text = re.sub(r"&#(?:([0-9]{1,7})|[xX]([0-9a-fA-F]{1,6}));", _code_point, re.sub(r"(?i)<br\s*/?>", "\n", text))
    for entity, char in _NAMED:
        text = text.replace(entity, char)
    return text


def tsv_text(path: Path) -> dict[int, tuple]:
    """Line -> (review_id, total_votes, category, summary, body) of every accepted TSV line."""
    data, _, _ = parse_tsv(path)
    lines = read_lines(path)
    out = {}
    for n, *_ in data:
        f = lines[n - 1].split("\t")
        out[n] = (f[2].strip(" ") or None, int(f[9].strip(" ")), f[6].strip(" ") or None, decode(f[12]),
                  decode(f[13]))
    return out


_JSON_TEXT = {"2023": ("title", "text"), "2018": ("summary", "reviewText"), "2014": ("summary", "reviewText")}


def json_category(name: str) -> str:
    """The category of a McAuley file name: reviews_<Cat>_5.json.gz, <Cat>_5.json, <Cat>.jsonl.gz."""
    m = re.fullmatch(r"(?:reviews_)?(.+?)(?:_5)?\.(?:json|jsonl)(?:\.gz)?", name)
    return (m.group(1) if m else name).replace("_", " ")


def json_text(path: Path, schema: str) -> dict[int, tuple]:
    """Line -> (review_id None, total_votes, category, summary, body) of every accepted JSON line."""
    data, _, _ = parse_json(path, schema)
    lines = read_lines(path)
    sk, bk = _JSON_TEXT[schema]
    out = {}
    for n, *_ in data:
        obj = json.loads(lines[n - 1])
        total = obj["helpful"][1] if schema == "2014" and "helpful" in obj else None
        out[n] = (None, total, json_category(path.name), decode(obj.get(sk)), decode(obj.get(bk)))
    return out
